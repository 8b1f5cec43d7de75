package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/journal"
)

func TestJournalVerifyInspect(t *testing.T) {
	data := t.TempDir()
	dir := filepath.Join(data, "journal")
	j, err := journal.Open(journal.Options{Dir: dir, SegmentSize: 4096, Fsync: journal.FsyncNever})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	for i := range 100 {
		ev := &event.Event{ID: event.NewID(), Type: "app.x", Source: "/t", Subject: "/a", Time: at.Add(time.Duration(i) * time.Second), Seq: uint64(i + 1)}
		b, err := ev.AppendBinary(nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := j.Append(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (int, string) {
		var out, errb bytes.Buffer
		code := Main(args, nil, &out, &errb)
		return code, out.String() + errb.String()
	}
	if code, out := run("journal", "verify", data); code != 0 || !strings.Contains(out, "100 records") || !strings.HasSuffix(out, "ok\n") {
		t.Errorf("verify of a sound journal: exit %d, output:\n%s", code, out)
	}
	code, out := run("journal", "inspect", data)
	if code != 0 || !strings.Contains(out, "2026-12-01T10:00:00Z") || !strings.Contains(out, "2026-12-01T10:01:39Z") {
		t.Errorf("inspect: exit %d, want the first and last event times; output:\n%s", code, out)
	}
	segs, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	b, err := os.ReadFile(segs[0])
	if err != nil {
		t.Fatal(err)
	}
	b[30] ^= 1
	if err := os.WriteFile(segs[0], b, 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out := run("journal", "verify", dir); code != 1 || !strings.Contains(out, "problem:") || !strings.Contains(out, segs[0]) {
		t.Errorf("verify of a damaged journal: exit %d, want 1 and the file; output:\n%s", code, out)
	}
}

func TestReadData(t *testing.T) {
	f := filepath.Join(t.TempDir(), "d.json")
	if err := os.WriteFile(f, []byte("{\n  \"a\": 1\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ arg, stdin, want string }{
		{`{"a":1}`, "", `{"a":1}`},
		{"@" + f, "", "{\n  \"a\": 1\n}"},
		{"-", "[1,2]\n", "[1,2]"},
	} {
		got, err := readData(tc.arg, strings.NewReader(tc.stdin))
		if err != nil || string(got) != tc.want {
			t.Errorf("readData(%q) = %q, %v; want %q", tc.arg, got, err, tc.want)
		}
	}
	if _, err := readData("@/nonexistent/x", nil); err == nil {
		t.Error("readData(@missing) = nil error")
	}
}

// TestCheckConfig: --check-config validates, prints the merged
// configuration with secrets masked, and exits without running.
func TestCheckConfig(t *testing.T) {
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "c.yaml")
	const secret = "s3cret-token-0123456789"
	if err := os.WriteFile(cfgFile, []byte("auth:\n  tokens:\n    - name: a\n      token: "+secret+"\n      scopes: [admin]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	data := filepath.Join(dir, "data")
	if code := Main([]string{"run", "--config", cfgFile, "--data", data, "--check-config"}, nil, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if strings.Contains(out.String(), secret) || !strings.Contains(out.String(), "<masked>") || !strings.Contains(out.String(), data) {
		t.Errorf("--check-config output:\n%s\nwant the data flag merged and the token masked", out.String())
	}
	if _, err := os.Stat(data); err == nil {
		t.Error("--check-config created the data directory")
	}
	out.Reset()
	errb.Reset()
	if code := Main([]string{"run", "--data", data, "--watch", filepath.Join(dir, "missing"), "--check-config"}, nil, &out, &errb); code == 0 || !strings.Contains(errb.String(), "--watch") {
		t.Errorf("--check-config of a bad configuration: exit %d, stderr %q", code, errb.String())
	}
}
