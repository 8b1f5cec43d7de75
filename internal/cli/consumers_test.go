package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/api"
	"github.com/semprop/semprop/internal/journal"
	"github.com/semprop/semprop/internal/propagate"
)

// apiServer runs a real API server on 127.0.0.1 for the client commands.
type apiServer struct {
	url string
	m   *propagate.Manager
	api *api.Server
}

func newAPIServer(t *testing.T) *apiServer {
	t.Helper()
	quiet := slog.New(slog.DiscardHandler)
	dir := t.TempDir()
	j, err := journal.Open(journal.Options{Dir: dir + "/journal", Fsync: journal.FsyncAlways, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	m, err := propagate.New(propagate.Options{Journal: j, Dir: dir, Source: "semprop://test", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	s := api.New(api.Options{Manager: m, Logger: quiet})
	s.SetReady(true, "")
	hs := httptest.NewServer(s)
	t.Cleanup(func() {
		s.Close()
		hs.Close()
		m.Close()
		j.Close()
	})
	return &apiServer{url: hs.URL, m: m, api: s}
}

func (a *apiServer) publish(t *testing.T, types ...string) {
	t.Helper()
	for i, typ := range types {
		ev := &event.Event{Type: typ, Subject: fmt.Sprintf("/data/%d", i), Source: "semprop://test/app"}
		if _, err := a.m.Publish(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
}

// squash collapses runs of spaces (tables are aligned with them).
func squash(s string) string { return spaces.ReplaceAllString(s, " ") }

var spaces = regexp.MustCompile(` +`)

// run runs the command line with --server appended (when server is set)
// and returns its exit status, stdout and stderr.
func run(t *testing.T, server string, args ...string) (int, string, string) {
	t.Helper()
	if server != "" {
		args = append(args, "--server", server)
	}
	var out, errb bytes.Buffer
	code := Main(args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

func TestConsumersCommands(t *testing.T) {
	a := newAPIServer(t)
	a.publish(t, "job.a", "other", "job.b")
	type step struct {
		args     []string
		code     int
		contains []string // in stdout (stderr when code != 0)
		absent   []string
	}
	for i, s := range []step{
		{[]string{"consumers", "add", "jobs", "--type", "job.*", "--ack-wait", "1h", "--max-deliver", "3"}, 0, []string{"created consumer jobs"}, nil},
		{[]string{"consumers", "add", "jobs"}, 1, []string{"409", "exists"}, nil},
		{[]string{"consumers", "add", "bad", "--type", "a..b"}, 1, []string{"type"}, nil},
		{[]string{"consumers", "add", "bad", "--ack-wait", "-1s"}, 1, []string{"--ack-wait"}, nil},
		{[]string{"consumers", "add", "bad", "--max-deliver", "5000"}, 1, []string{"max_deliver"}, nil},
		{[]string{"consumers", "add", strings.Repeat("n", 65)}, 1, []string{"field name"}, nil},
		{[]string{"consumers", "add", "bad", "--redact", "comm"}, 1, []string{"FIELD=ACTION"}, nil},
		{[]string{"consumers", "add", "bad", "--redact", "nope=mask"}, 1, []string{"field redact"}, nil},
		{[]string{"consumers", "add", "safe", "--deny", "**/1", "--redact", "subject=mask"}, 0, []string{"created consumer safe"}, nil},
		{[]string{"consumers", "next", "safe", "--count", "5", "--ack", "--wait", "100ms"}, 0, []string{`"seq":1`, `"seq":3`, `"subject":"***"`}, []string{`"seq":2`, "/data/"}},
		{[]string{"consumers", "info", "safe"}, 0, []string{"Selector: !**/1", "Redact: subject=mask"}, nil},
		{[]string{"consumers", "rm", "safe"}, 0, nil, nil},
		{[]string{"consumers", "ls"}, 0, []string{"NAME", "BACKLOG", "jobs", "job.*"}, []string{"bad"}},
		{[]string{"consumers", "next", "jobs"}, 0, []string{`{"attempt":1,"event":{`, `"seq":1`, `"type":"job.a"`}, []string{`"seq":3`}},
		{[]string{"consumers", "info", "jobs"}, 0, []string{"Selector:", "job.*", "Max deliver: 3", "lag 2", "Backlog: 1 matching", "Ack pending: 1", "State: open"}, nil},
		{[]string{"consumers", "ack", "jobs", "1"}, 0, nil, nil},
		{[]string{"consumers", "ack", "jobs", "x"}, 1, []string{`seq "x"`}, nil},
		{[]string{"consumers", "next", "jobs", "--count", "5", "--ack", "--wait", "100ms"}, 0, []string{`"seq":3`}, []string{`"seq":2`, `"seq":1,`}},
		{[]string{"consumers", "next", "jobs", "--wait", "50ms"}, 0, nil, []string{"attempt"}},
		{[]string{"consumers", "next", "jobs", "--count", "0"}, 1, []string{"--count"}, nil},
		{[]string{"consumers", "rm", "jobs"}, 0, []string{"removed consumer jobs"}, nil},
		{[]string{"consumers", "info", "jobs"}, 1, []string{"404"}, nil},
		{[]string{"consumers", "rm", "jobs"}, 1, []string{"404"}, nil},
	} {
		code, out, errOut := run(t, a.url, s.args...)
		text := out
		if s.code != 0 {
			text = errOut
		}
		text = squash(text)
		if code != s.code {
			t.Fatalf("step %d: semprop %s = exit %d (stdout %q, stderr %q), want %d", i, strings.Join(s.args, " "), code, out, errOut, s.code)
		}
		for _, want := range s.contains {
			if !strings.Contains(text, want) {
				t.Errorf("step %d: semprop %s printed %q, want it to contain %q", i, strings.Join(s.args, " "), text, want)
			}
		}
		for _, no := range s.absent {
			if strings.Contains(text, no) {
				t.Errorf("step %d: semprop %s printed %q, want no %q", i, strings.Join(s.args, " "), text, no)
			}
		}
	}
}

func TestConsumersJSON(t *testing.T) {
	a := newAPIServer(t)
	a.publish(t, "fs.write", "fs.create", "app.x")
	if code, _, errOut := run(t, a.url, "consumers", "add", "fs", "--type", "fs.>"); code != 0 {
		t.Fatalf("add: %s", errOut)
	}
	code, out, errOut := run(t, a.url, "consumers", "ls", "--json")
	if code != 0 {
		t.Fatalf("ls --json: %s", errOut)
	}
	if strings.Contains(out, `\u003e`) {
		t.Errorf("ls --json escapes >: %s", out)
	}
	var cs []struct {
		Name string `json:"name"`
		Spec struct {
			Type string `json:"type"`
		} `json:"spec"`
		Info struct {
			Backlog uint64 `json:"backlog"`
			Lag     uint64 `json:"lag"`
		} `json:"info"`
	}
	if err := json.Unmarshal([]byte(out), &cs); err != nil {
		t.Fatalf("ls --json = %q: %v", out, err)
	}
	if len(cs) != 1 || cs[0].Name != "fs" || cs[0].Spec.Type != "fs.>" || cs[0].Info.Backlog != 2 || cs[0].Info.Lag != 3 {
		t.Errorf("ls --json = %+v, want fs with backlog 2 of lag 3", cs)
	}
	code, out, _ = run(t, a.url, "consumers", "info", "fs", "--json")
	var one struct {
		Info struct {
			Backlog uint64 `json:"backlog"`
		} `json:"info"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &one) != nil || one.Info.Backlog != 2 {
		t.Errorf("info --json = %d %q, want backlog 2", code, out)
	}
}

// Every new command explains itself with an example.
func TestConsumersAndStatusHelp(t *testing.T) {
	for _, args := range [][]string{
		{"consumers"}, {"consumers", "ls"}, {"consumers", "add"}, {"consumers", "info"}, {"consumers", "next"},
		{"consumers", "ack"}, {"consumers", "rm"}, {"status"},
	} {
		code, out, _ := run(t, "", append(args, "--help")...)
		if code != 0 || !strings.Contains(out, "Examples:") || !strings.Contains(out, "semprop "+args[0]) {
			t.Errorf("semprop %s --help = %d, %q; want an example", strings.Join(args, " "), code, out)
		}
	}
}
