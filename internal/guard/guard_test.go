package guard

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/semprop/semprop/internal/action"
	"github.com/semprop/semprop/internal/api"
)

// sleeper starts a process that lives until the test ends.
func sleeper(t *testing.T) int32 {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return int32(cmd.Process.Pid)
}

type clock struct{ ns atomic.Int64 }

func (c *clock) now() time.Time      { return time.Unix(0, c.ns.Load()) }
func (c *clock) add(d time.Duration) { c.ns.Add(int64(d)) }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}

// TestQuarantine: a listed pid is refused until its expiry and counted;
// other pids, and uids not listed by uid, are not; a release ends it.
func TestQuarantine(t *testing.T) {
	clk := newClock()
	g, err := New(Options{Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	if g.Active() {
		t.Fatal("Active with nobody listed")
	}
	pid := sleeper(t)
	if err := g.Quarantine(pid, 1000, false, clk.now().Add(time.Minute), "test"); err != nil {
		t.Fatal(err)
	}
	if !g.Active() {
		t.Fatal("not Active after Quarantine")
	}
	for _, c := range []struct {
		pid  int32
		uid  uint32
		want bool
	}{{pid, 1000, true}, {pid, 0, true}, {pid + 1, 1000, false}, {0, 1000, false}} {
		if got := g.Refuse(c.pid, c.uid, "write"); got != c.want {
			t.Errorf("Refuse(%d, %d) = %v, want %v", c.pid, c.uid, got, c.want)
		}
	}
	if l := g.List(); len(l) != 1 || l[0].PID != pid || l[0].Refused != 2 || l[0].Start == "" {
		t.Errorf("List() = %+v, want pid %d with 2 refusals and a start time", l, pid)
	}
	if st := g.Stats(); st.Refused["write"] != 2 || st.Listed != 1 {
		t.Errorf("Stats() = %+v", st)
	}
	clk.add(time.Minute)
	if g.Refuse(pid, 1000, "write") {
		t.Error("refused after the expiry")
	}
	g.Prune()
	if g.Active() {
		t.Error("expired entry not pruned")
	}
	if err := g.Quarantine(pid, 1000, true, clk.now().Add(time.Hour), "again"); err != nil {
		t.Fatal(err)
	}
	if !g.Refuse(0, 1000, "unlink") || !g.Refuse(12345, 1000, "unlink") {
		t.Error("uid listed with byUID not refused for another process")
	}
	if err := g.Release(pid, 1000, true); err != nil {
		t.Fatal(err)
	}
	if g.Active() || g.Refuse(pid, 1000, "write") {
		t.Error("refused after Release")
	}
	if err := g.Release(pid, 1000, true); !errors.Is(err, ErrNotListed) {
		t.Errorf("second Release = %v, want ErrNotListed", err)
	}
}

// TestQuarantineProtected: pid 1, the guard's own process, uid 0 and a
// process that does not exist are never listed.
func TestQuarantineProtected(t *testing.T) {
	g, _ := New(Options{})
	until := time.Now().Add(time.Minute)
	for _, c := range []struct {
		pid   int32
		uid   uint32
		byUID bool
		want  error
	}{{1, 0, false, ErrProtected}, {int32(os.Getpid()), 0, false, ErrProtected}, {sleeper(t), 0, true, ErrProtected}, {1 << 30, 5, false, ErrGone}} {
		if err := g.Quarantine(c.pid, c.uid, c.byUID, until, ""); !errors.Is(err, c.want) {
			t.Errorf("Quarantine(%d, %d, %v) = %v, want %v", c.pid, c.uid, c.byUID, err, c.want)
		}
	}
	if g.Active() {
		t.Error("something was listed")
	}
}

// TestPruneExited: a listed process that exits is dropped by Prune.
func TestPruneExited(t *testing.T) {
	g, _ := New(Options{})
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := int32(cmd.Process.Pid)
	if err := g.Quarantine(pid, 0, false, time.Now().Add(time.Hour), ""); err != nil {
		t.Fatal(err)
	}
	cmd.Process.Kill()
	cmd.Wait()
	g.Prune()
	if g.Active() {
		t.Errorf("exited process still listed: %+v", g.List())
	}
}

// TestPersist: the list survives a restart (New on the same Dir); an
// entry whose process exited meanwhile does not.
func TestPersist(t *testing.T) {
	dir := t.TempDir()
	g, _ := New(Options{Dir: dir})
	alive := sleeper(t)
	cmd := exec.Command("sleep", "60")
	cmd.Start()
	dead := int32(cmd.Process.Pid)
	for _, p := range []int32{alive, dead} {
		if err := g.Quarantine(p, 77, false, time.Now().Add(time.Hour), "r"); err != nil {
			t.Fatal(err)
		}
	}
	g.Refuse(alive, 77, "write")
	g.Quarantine(alive, 77, true, time.Now().Add(time.Hour), "r") // saves the refusal count too
	cmd.Process.Kill()
	cmd.Wait()
	g2, err := New(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	l := g2.List()
	if len(l) != 2 || l[0].PID != alive || l[0].Refused != 1 || !l[1].ByUID || l[1].UID != 77 {
		t.Errorf("after a restart: %+v, want pid %d (1 refusal) and uid 77", l, alive)
	}
}

// TestPreserve: a file is copied into the store with a manifest of rule
// guard that restores it; empty, linked (for unlink), too large and
// truncate-to-a-larger-size files are not.
func TestPreserve(t *testing.T) {
	store, err := action.OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	g, err := New(Options{Config: Config{SnapshotBeforeDestroy: true, MaxFileSize: 100}, Snapshots: store})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o640); err != nil {
			t.Fatal(err)
		}
		return p
	}
	a := write("a", "precious")
	g.Preserve(a, "/mnt/a", "unlink", -1)
	g.Preserve(write("empty", ""), "/mnt/empty", "unlink", -1)
	g.Preserve(write("big", strings.Repeat("x", 101)), "/mnt/big", "unlink", -1)
	l := write("linked", "two names")
	os.Link(l, filepath.Join(dir, "linked2"))
	g.Preserve(l, "/mnt/linked", "unlink", -1)
	g.Preserve(l, "/mnt/linked", "setattr", 0) // a truncate destroys data whatever the links
	g.Preserve(write("grow", "abc"), "/mnt/grow", "setattr", 10)
	g.Preserve(filepath.Join(dir, "missing"), "/mnt/missing", "unlink", -1)
	st := g.Stats()
	if st.Preserved != 2 || st.PreserveSkipped != 5 || st.PreserveFailed != 0 {
		t.Errorf("Stats() = %+v, want 2 preserved, 5 skipped", st)
	}
	if ms, _ := store.List(); len(ms) != 0 {
		t.Errorf("%d manifests before a flush, want none", len(ms))
	}
	g.Flush()
	g.Flush() // nothing pending: no second manifest
	ms, err := store.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 1 || ms[0].Rule != Rule {
		t.Fatalf("manifests %+v, want one of rule guard", ms)
	}
	var got []string
	for _, f := range ms[0].Files {
		got = append(got, f.Op+" "+f.Path)
	}
	if strings.Join(got, ",") != "unlink /mnt/a,setattr /mnt/linked" {
		t.Errorf("files %v", got)
	}
	to := t.TempDir()
	if _, err := store.Restore(ms[0].ID, action.RestoreOptions{To: to, Paths: []string{"/mnt/a"}}); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(filepath.Join(to, "mnt/a")); string(data) != "precious" {
		t.Errorf("restored %q, want precious", data)
	}
}

// TestPreserveOff: without snapshot_before_destroy nothing is copied.
func TestPreserveOff(t *testing.T) {
	store, _ := action.OpenStore(t.TempDir())
	g, _ := New(Options{Snapshots: store})
	p := filepath.Join(t.TempDir(), "a")
	os.WriteFile(p, []byte("x"), 0o600)
	if g.Preserving() {
		t.Error("Preserving() with the default configuration")
	}
	g.Preserve(p, "/mnt/a", "unlink", -1)
	if ms, _ := store.List(); len(ms) != 0 {
		t.Errorf("%d manifests, want none", len(ms))
	}
	if _, err := New(Options{Config: Config{SnapshotBeforeDestroy: true}}); !errors.Is(err, ErrConfig) {
		t.Errorf("New without a store = %v, want ErrConfig", err)
	}
}

// TestHTTP: GET /v1/guard lists the entries; POST /v1/guard/release
// releases, 404 when not listed, 400 for a bad body.
func TestHTTP(t *testing.T) {
	g, _ := New(Options{Config: DefaultConfig()})
	pid := sleeper(t)
	g.Quarantine(pid, 5, false, time.Now().Add(time.Hour), "rule/x")
	g.Refuse(pid, 5, "unlink")
	srv := api.New(api.Options{})
	g.Register(srv)
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	get := func() Status {
		t.Helper()
		resp, err := http.Get(ts.URL + "/v1/guard")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var st Status
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET: %d %v", resp.StatusCode, err)
		}
		return st
	}
	st := get()
	if !st.Enabled || len(st.Entries) != 1 || st.Entries[0].PID != pid || st.Entries[0].Reason != "rule/x" || st.Stats.Refused["unlink"] != 1 {
		t.Errorf("GET /v1/guard = %+v", st)
	}
	post := func(body string) int {
		t.Helper()
		resp, err := http.Post(ts.URL+"/v1/guard/release", "application/json", bytes.NewBufferString(body))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, c := range []struct {
		body string
		want int
	}{{`{"pid":1}`, 404}, {`{"bogus":1}`, 400}, {`{}`, 400}, {`{"pid":` + itoa(pid) + `}`, 200}, {`{"pid":` + itoa(pid) + `}`, 404}} {
		if got := post(c.body); got != c.want {
			t.Errorf("POST %s = %d, want %d", c.body, got, c.want)
		}
	}
	if st := get(); len(st.Entries) != 0 {
		t.Errorf("after release: %+v", st.Entries)
	}
}

func itoa(p int32) string { b, _ := json.Marshal(p); return string(b) }

// TestConfigSize: max_file_size takes units.
func TestConfigSize(t *testing.T) {
	for in, want := range map[string]Size{"64MiB": 64 << 20, "1KB": 1000, "4096": 4096} {
		var s Size
		if err := s.UnmarshalText([]byte(in)); err != nil || s != want {
			t.Errorf("Size(%q) = %d, %v; want %d", in, s, err, want)
		}
	}
	c := DefaultConfig()
	if err := yaml.Unmarshal([]byte("snapshot_before_destroy: true\nmax_file_size: 2MiB\nquarantine_for: 5m\n"), &c); err != nil {
		t.Fatal(err)
	}
	if want := (Config{Enabled: true, SnapshotBeforeDestroy: true, MaxFileSize: 2 << 20, QuarantineFor: 5 * time.Minute}); c != want {
		t.Errorf("decoded %+v, want %+v", c, want)
	}
	var s Size
	if err := s.UnmarshalText([]byte("-1")); !errors.Is(err, ErrConfig) {
		t.Errorf("Size(-1) = %v, want ErrConfig", err)
	}
}
