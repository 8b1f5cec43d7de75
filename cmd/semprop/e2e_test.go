package main_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/semprop/semprop/client"
	"github.com/semprop/semprop/event"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "semprop-e2e")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "semprop")
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build semprop: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type daemon struct {
	cmd  *exec.Cmd
	url  string
	logs *logBuffer
}

// logBuffer collects a daemon's output; the test reads it while the
// process writes.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startDaemon runs `semprop run` with args and waits until it is ready.
func startDaemon(t *testing.T, data string, args ...string) *daemon {
	t.Helper()
	addr := freeAddr(t)
	cmd := exec.Command(binary, append([]string{"run", "--data", data, "--listen", addr}, args...)...)
	logs := &logBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &daemon{cmd: cmd, url: "http://" + addr, logs: logs}
	t.Cleanup(func() {
		if d.cmd.ProcessState == nil {
			_ = d.cmd.Process.Kill()
			_ = d.cmd.Wait()
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(d.url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return d
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("daemon not ready in 10s; logs:\n%s", logs)
	return nil
}

// stop sends SIGTERM and requires a clean exit within 10s.
func (d *daemon) stop(t *testing.T) {
	t.Helper()
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- d.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("daemon exit: %v; logs:\n%s", err, d.logs)
		}
	case <-time.After(10 * time.Second):
		_ = d.cmd.Process.Kill()
		t.Fatalf("daemon did not stop within 10s of SIGTERM; logs:\n%s", d.logs)
	}
}

func TestEndToEnd(t *testing.T) {
	data := t.TempDir()
	d := startDaemon(t, data)
	c := client.New(d.url, "")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// Publish 100 events one by one and 400 in batches.
	var want []uint64
	for i := range 100 {
		seq, err := c.Publish(ctx, &event.Event{Type: "vector.insert", Subject: fmt.Sprintf("/doc/%d", i), Data: []byte(`{"n":1}`)})
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, seq)
	}
	for b := range 4 {
		evs := make([]*event.Event, 100)
		for i := range evs {
			evs[i] = &event.Event{Type: "app.batch", Subject: fmt.Sprintf("/b/%d/%d", b, i)}
		}
		seqs, err := c.PublishBatch(ctx, evs)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, seqs...)
	}
	for i, s := range want {
		if s != uint64(i+1) {
			t.Fatalf("seq %d = %d: acknowledged seqs not contiguous", i, s)
		}
	}

	// Tail with resume: read the first 250, stop, then resume after the
	// last seen; together exactly 1..500, in order.
	var got []uint64
	stopAt := fmt.Errorf("stop")
	err := c.Stream(ctx, client.Selector{}, 0, func(ev *event.Event) error {
		got = append(got, ev.Seq)
		if len(got) == 250 {
			return stopAt
		}
		return nil
	})
	if err != stopAt {
		t.Fatalf("first stream: %v", err)
	}
	sctx, scancel := context.WithCancel(ctx)
	go func() {
		// Publish more while the resumed stream runs.
		for i := range 50 {
			if _, err := c.Publish(ctx, &event.Event{Type: "late.event", Subject: fmt.Sprint(i)}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	_ = c.Stream(sctx, client.Selector{}, got[len(got)-1], func(ev *event.Event) error {
		got = append(got, ev.Seq)
		if len(got) == 550 {
			scancel()
		}
		return nil
	})
	scancel()
	if len(got) != 550 {
		t.Fatalf("streamed %d events, want 550", len(got))
	}
	for i, s := range got {
		if s != uint64(i+1) {
			t.Fatalf("stream event %d has seq %d: gap or duplicate", i, s)
		}
	}

	// SSE resume with a raw Last-Event-ID header.
	req, _ := http.NewRequestWithContext(ctx, "GET", d.url+"/v1/stream?type=late.*", nil)
	req.Header.Set("Last-Event-ID", "548")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(resp.Body)
	var ids []string
	for sc.Scan() && len(ids) < 3 {
		if id, ok := strings.CutPrefix(sc.Text(), "id: "); ok {
			ids = append(ids, id)
		}
	}
	resp.Body.Close()
	// The stream's position first (an id without data), then the events.
	if strings.Join(ids, ",") != "548,549,550" {
		t.Errorf("Last-Event-ID 548 resumed with ids %v, want the position 548, then 549,550", ids)
	}

	// Replay with a type filter.
	var replayed []string
	last, err := c.Replay(ctx, client.Selector{Type: "app.*"}, 0, 1000, func(ev *event.Event) error {
		replayed = append(replayed, ev.Subject)
		return nil
	})
	if err != nil || len(replayed) != 400 || replayed[0] != "/b/0/0" || last != 500 {
		t.Fatalf("replay app.* = %d events (first %v), last %d, %v; want 400 from /b/0/0 to seq 500", len(replayed), replayed[:min(1, len(replayed))], last, err)
	}

	// Errors.
	for _, tc := range []struct {
		ctype, body string
		status      int
		field       string
	}{
		{"application/cloudevents+json", `{"specversion":"1.0","type":"x",`, 400, ""},
		{"application/cloudevents+json", `{"specversion":"1.0","id":"1","source":"t","type":"a..b"}`, 400, "type"},
		{"application/cloudevents+json", `{"specversion":"1.0","id":"1","source":"t","type":"x","pid":"me"}`, 400, "pid"},
		{"text/plain", `hi`, 415, "Content-Type"},
		{"application/cloudevents+json", `{"specversion":"1.0","id":"1","source":"t","type":"x","data":"` + strings.Repeat("a", 1<<20) + `"}`, 413, "data"},
	} {
		resp, err := http.Post(d.url+"/v1/events", tc.ctype, strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		var e client.Error
		_ = jsonDecode(resp, &e)
		if resp.StatusCode != tc.status || e.Field != tc.field {
			t.Errorf("POST %s %.40q = %d field %q, want %d field %q", tc.ctype, tc.body, resp.StatusCode, e.Field, tc.status, tc.field)
		}
	}

	// Graceful shutdown, restart: everything is still there.
	d.stop(t)
	d2 := startDaemon(t, data)
	n := 0
	_, err = client.New(d2.url, "").Replay(ctx, client.Selector{}, 0, 100000, func(*event.Event) error { n++; return nil })
	if err != nil || n != 550 {
		t.Fatalf("after restart replay = %d events, %v; want 550", n, err)
	}
	d2.stop(t)
}

func TestCLIPublishAndTail(t *testing.T) {
	d := startDaemon(t, t.TempDir())
	out, err := exec.Command(binary, "publish", "--server", d.url, "vector.insert", "--subject", "/a", "--data", `{"x":1}`).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "1" {
		t.Fatalf("publish = %q, %v; want seq 1", out, err)
	}
	stdin := `{"specversion":"1.0","type":"a.b","source":"t","id":"1"}` + "\n" + `{"specversion":"1.0","type":"a.c","source":"t","id":"2"}` + "\n"
	cmd := exec.Command(binary, "publish", "--server", d.url)
	cmd.Stdin = strings.NewReader(stdin)
	out, err = cmd.CombinedOutput()
	if err != nil || strings.Fields(string(out))[1] != "3" {
		t.Fatalf("publish from stdin = %q, %v; want seqs 2 and 3", out, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tail := exec.CommandContext(ctx, binary, "tail", "--server", d.url, "--from-beginning", "a.*")
	stdout, _ := tail.StdoutPipe()
	if err := tail.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	var types []string
	for len(types) < 2 && sc.Scan() {
		var e event.Event
		if err := e.UnmarshalJSON(sc.Bytes()); err != nil {
			t.Fatalf("tail printed %q: %v", sc.Text(), err)
		}
		types = append(types, e.Type+"/"+e.SourceID)
	}
	_ = tail.Process.Signal(syscall.SIGINT)
	_ = tail.Wait()
	if strings.Join(types, ",") != "a.b/1,a.c/2" {
		t.Errorf("tail a.* printed %v, want a.b/1,a.c/2", types)
	}
	out, _ = exec.Command(binary, "tail", "--server", d.url, "fs.>.x").CombinedOutput()
	if !strings.Contains(string(out), `">" must be the last token`) {
		t.Errorf("tail with a bad pattern printed %q, want a clear error", out)
	}
	d.stop(t)
}

func jsonDecode(resp *http.Response, v any) error {
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for fanotify and FUSE mounts")
	}
}

// tmpfsDir returns a new directory on a tmpfs of its own, unmounted when
// the test ends. The kernel boundary marks the whole file system of what
// it watches: on the root file system its queue (16,384 events) also
// takes every other test's file activity, and under a full parallel test
// run it overflowed, adding fs.overflow and fs.rescan to events a test
// expects exactly.
func tmpfsDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("semprop-test", dir, "tmpfs", 0, "size=64m"); err != nil {
		t.Skipf("skipping: cannot mount tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			syscall.Unmount(dir, syscall.MNT_DETACH)
		}
	})
	return dir
}

func TestRunRefusesDataInsideWatchedTree(t *testing.T) {
	dir := t.TempDir()
	out, err := exec.Command(binary, "run", "--data", filepath.Join(dir, "data"), "--watch", dir, "--listen", freeAddr(t)).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "feedback loop") {
		t.Fatalf("run with data inside the watched tree = %v, %s; want a refusal", err, out)
	}
}

// collect replays every event from the daemon.
func collect(t *testing.T, url string) []*event.Event {
	t.Helper()
	var evs []*event.Event
	_, err := client.New(url, "").Replay(context.Background(), client.Selector{}, 0, 100000, func(e *event.Event) error {
		evs = append(evs, e)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// waitFor polls the daemon until pred holds for the events or 10s pass.
func waitFor(t *testing.T, url string, pred func([]*event.Event) bool) []*event.Event {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		evs := collect(t, url)
		if pred(evs) || time.Now().After(deadline) {
			return evs
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestRunWatchCapturesKernelEvents(t *testing.T) {
	needRoot(t)
	watched := tmpfsDir(t)
	d := startDaemon(t, t.TempDir(), "--watch", watched)
	cmd := exec.Command("sh", "-c", "echo hello > "+watched+"/a.txt && mkdir "+watched+"/d && mv "+watched+"/a.txt "+watched+"/d/b.txt && rm "+watched+"/d/b.txt")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("workload: %v %s", err, out)
	}
	evs := waitFor(t, d.url, func(evs []*event.Event) bool { return len(evs) >= 5 })
	var got []string
	for _, e := range evs {
		rel, _ := filepath.Rel(watched, e.Subject)
		got = append(got, e.Type+" "+rel)
		if e.Boundary != event.BoundaryKernel || !e.Context.Has(event.HasPID) {
			t.Errorf("%s: boundary %v, pid known %v; want kernel with pid", e, e.Boundary, e.Context.Has(event.HasPID))
		}
	}
	want := "fs.create a.txt,fs.write a.txt,fs.mkdir d,fs.rename d/b.txt,fs.delete d/b.txt"
	if strings.Join(got, ",") != want {
		t.Errorf("events = %v, want %s", got, want)
	}
	d.stop(t)
}

func TestRunMountBridgesFUSEAndKernel(t *testing.T) {
	needRoot(t)
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("needs /dev/fuse")
	}
	for _, pt := range []string{"on", "off"} {
		t.Run("passthrough="+pt, func(t *testing.T) {
			base := t.TempDir()
			backing, mnt := tmpfsDir(t), filepath.Join(base, "mnt")
			t.Cleanup(func() { syscall.Unmount(mnt, syscall.MNT_DETACH) }) // if the daemon dies mounted
			d := startDaemon(t, filepath.Join(base, "data"), "--mount", backing+":"+mnt, "--fuse-passthrough", pt)
			cmd := exec.Command("sh", "-c", "echo hello > "+mnt+"/f.txt")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("write through the mount: %v %s", err, out)
			}
			pid := int32(cmd.ProcessState.Pid())
			waitFor(t, d.url, func(evs []*event.Event) bool { return len(evs) >= 2 })
			time.Sleep(200 * time.Millisecond) // anything extra would arrive within the bridge window
			evs := collect(t, d.url)
			var got []string
			for _, e := range evs {
				got = append(got, e.Type+" "+e.Subject)
				if e.Context.PID != pid {
					t.Errorf("%s: pid %d, want the writer's %d", e, e.Context.PID, pid)
				}
			}
			want := "fs.create " + mnt + "/f.txt,fs.write " + mnt + "/f.txt"
			if strings.Join(got, ",") != want {
				t.Errorf("events = %v, want %s (each operation once)", got, want)
			}
			d.stop(t)
			if b, err := os.ReadFile(filepath.Join(backing, "f.txt")); err != nil || string(b) != "hello\n" {
				t.Errorf("backing file = %q, %v", b, err)
			}
		})
	}
}

func TestRunRefusesCorruptJournal(t *testing.T) {
	data := t.TempDir()
	cfg := filepath.Join(data, "c.yaml")
	os.WriteFile(cfg, []byte("segment_size: 4KiB\n"), 0o644)
	d := startDaemon(t, data, "--config", cfg)
	evs := make([]*event.Event, 200)
	for i := range evs {
		evs[i] = &event.Event{Type: "fill.up", Subject: strings.Repeat("x", 64)}
	}
	if _, err := client.New(d.url, "").PublishBatch(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
	d.stop(t)
	segs, _ := filepath.Glob(filepath.Join(data, "journal", "*.seg"))
	if len(segs) < 2 {
		t.Fatalf("%d segments, want several", len(segs))
	}
	f, err := os.OpenFile(segs[0], os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte{0xff, 0xfe}, 100) // flip bytes inside the first record
	f.Close()
	out, err := exec.Command(binary, "run", "--data", data, "--listen", freeAddr(t)).CombinedOutput()
	if err == nil {
		t.Fatalf("daemon ran on a corrupt journal: %s", out)
	}
	if !strings.Contains(string(out), filepath.Base(segs[0])) || !strings.Contains(string(out), "offset") {
		t.Errorf("error does not name the file and offset: %s", out)
	}
}
