package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/semprop/semprop/internal/cluster"
)

func TestClusterCommand(t *testing.T) {
	var got []string
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/cluster", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(cluster.Status{ID: "a", State: "Leader", Leader: "a", Term: 3, CommitIndex: 42, Ready: true,
			Members: []cluster.MemberStatus{
				{Member: cluster.Member{ID: "a", RaftAddr: "127.0.0.1:1", APIURL: "http://a"}, Suffrage: "voter", Self: true, Leader: true, AppliedIndex: 42},
				{Member: cluster.Member{ID: "b", RaftAddr: "127.0.0.1:2", APIURL: "http://b"}, Suffrage: "voter", AppliedIndex: 40, Lag: 2,
					OffsetNS: int64(30 * time.Microsecond), ErrorNS: int64(20 * time.Microsecond), LastSeen: time.Now()},
			}})
	})
	mux.HandleFunc("POST /v1/cluster/join", func(w http.ResponseWriter, r *http.Request) {
		var m cluster.Member
		json.NewDecoder(r.Body).Decode(&m)
		got = append(got, "join "+m.ID+" "+m.RaftAddr+" "+m.APIURL+" "+r.Header.Get("Authorization"))
		json.NewEncoder(w).Encode(map[string]string{"joined": m.ID})
	})
	mux.HandleFunc("POST /v1/cluster/leave", func(w http.ResponseWriter, r *http.Request) {
		var req map[string]string
		json.NewDecoder(r.Body).Decode(&req)
		if req["id"] == "zz" {
			w.WriteHeader(http.StatusServiceUnavailable)
			json.NewEncoder(w).Encode(map[string]string{"error": "cluster: no quorum"})
			return
		}
		got = append(got, "leave "+req["id"])
		json.NewEncoder(w).Encode(map[string]string{"left": req["id"]})
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	run := func(args ...string) (string, error) {
		cmd := newClusterCmd()
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		cmd.SetArgs(args)
		err := cmd.Execute()
		return out.String(), err
	}
	out, err := run("status", "--server", srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"node a: Leader, term 3, leader a, commit index 42, ready", "b ", "voter", "30µs ± 20µs"} {
		if !strings.Contains(out, want) {
			t.Errorf("status output lacks %q:\n%s", want, out)
		}
	}
	if _, err := run("join", "--server", srv.URL, "--token", "tok", "--id", "c", "--raft-addr", "127.0.0.1:3", "--api-url", "http://c"); err != nil {
		t.Fatal(err)
	}
	if _, err := run("leave", "--server", srv.URL, "--id", "b"); err != nil {
		t.Fatal(err)
	}
	if _, err := run("leave", "--server", srv.URL, "--id", "zz"); err == nil || !strings.Contains(err.Error(), "no quorum") {
		t.Errorf("leave refused by the server: err %v, want the server's error", err)
	}
	if _, err := run("leave", "--server", srv.URL); err == nil || !strings.Contains(err.Error(), "--id") {
		t.Errorf("leave without --id: err %v, want --id required (never a default that removes the node asked)", err)
	}
	want := []string{"join c 127.0.0.1:3 http://c Bearer tok", "leave b"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("server saw %q, want %q", got, want)
	}
}

func TestClusterFlagsValidate(t *testing.T) {
	tests := []struct {
		f       clusterFlags
		wantErr bool
	}{
		{clusterFlags{}, false},
		{clusterFlags{nodeID: "a", raftAddr: "127.0.0.1:1", bootstrap: true}, false},
		{clusterFlags{nodeID: "a", raftAddr: "127.0.0.1:1", join: "http://x"}, false},
		{clusterFlags{nodeID: "a"}, true},
		{clusterFlags{raftAddr: "127.0.0.1:1"}, true},
		{clusterFlags{nodeID: "a", raftAddr: "127.0.0.1:1", bootstrap: true, join: "http://x"}, true},
		// Without cluster credentials, only loopback Raft addresses.
		{clusterFlags{nodeID: "a", raftAddr: "localhost:1", bootstrap: true}, false},
		{clusterFlags{nodeID: "a", raftAddr: "[::1]:1", bootstrap: true}, false},
		{clusterFlags{nodeID: "a", raftAddr: "0.0.0.0:7000", bootstrap: true}, true},
		{clusterFlags{nodeID: "a", raftAddr: ":7000", bootstrap: true}, true},
		{clusterFlags{nodeID: "a", raftAddr: "10.0.0.5:7000", join: "http://x"}, true},
		{clusterFlags{nodeID: "a", raftAddr: "node-a.example:7000", join: "http://x"}, true},
		{clusterFlags{nodeID: "a", raftAddr: "10.0.0.5:7000", join: "http://x", caFile: "ca", certFile: "c", keyFile: "k"}, false},
		// All three credential files or none.
		{clusterFlags{nodeID: "a", raftAddr: "10.0.0.5:7000", join: "http://x", caFile: "ca", certFile: "c"}, true},
		{clusterFlags{nodeID: "a", raftAddr: "127.0.0.1:1", bootstrap: true, keyFile: "k"}, true},
		{clusterFlags{caFile: "ca", certFile: "c", keyFile: "k"}, true},
	}
	for _, tt := range tests {
		if err := tt.f.validate(); (err != nil) != tt.wantErr {
			t.Errorf("validate(%+v) = %v, want error %v", tt.f, err, tt.wantErr)
		}
	}
}

func TestClusterCertsCommand(t *testing.T) {
	dir := t.TempDir()
	run := func(args ...string) (string, error) {
		cmd := newClusterCmd()
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		cmd.SetArgs(append([]string{"certs", "--dir", dir}, args...))
		err := cmd.Execute()
		return out.String(), err
	}
	if _, err := run("n1", "n2"); err != nil {
		t.Fatal(err)
	}
	// A later run reuses the CA: n3's certificate is from the same cluster.
	if _, err := run("n3"); err != nil {
		t.Fatal(err)
	}
	// Existing files are never overwritten.
	if _, err := run("n1"); err == nil {
		t.Errorf("certs for an existing node: no error, want a refusal to overwrite")
	}
	for _, id := range []string{"n1", "n2", "n3"} {
		if _, err := cluster.LoadCredentials(filepath.Join(dir, "ca.pem"), filepath.Join(dir, id+".pem"), filepath.Join(dir, id+"-key.pem")); err != nil {
			t.Errorf("%s: %v", id, err)
		}
		fi, err := os.Stat(filepath.Join(dir, id+"-key.pem"))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s key mode %v, want 0600", id, fi.Mode().Perm())
		}
	}
	// A certificate does not load against another cluster's CA.
	other := t.TempDir()
	cmd := newClusterCmd()
	cmd.SetOut(io.Discard)
	cmd.SetArgs([]string{"certs", "--dir", other, "x"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if _, err := cluster.LoadCredentials(filepath.Join(other, "ca.pem"), filepath.Join(dir, "n1.pem"), filepath.Join(dir, "n1-key.pem")); !errors.Is(err, cluster.ErrCredentials) {
		t.Errorf("n1's certificate with another CA: err %v, want ErrCredentials", err)
	}
	if _, err := run("../evil"); err == nil {
		t.Errorf("node ID with a slash: no error")
	}
}
