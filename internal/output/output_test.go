package output

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/filter"
	"github.com/semprop/semprop/internal/journal"
	"github.com/semprop/semprop/internal/propagate"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(childMain())
	}
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("github.com/nats-io/nats-server/v2/server.(*Server).logRejectedTLSConns"),
		goleak.IgnoreAnyFunction("github.com/nats-io/nats-server/v2/server.(*fileStore).syncBlocks"),
		goleak.IgnoreAnyFunction("github.com/nats-io/nats-server/v2/server.(*Server).Start.func1"),
		goleak.IgnoreAnyFunction("internal/poll.runtime_pollWait"),
		goleak.IgnoreAnyFunction("github.com/nats-io/nats-server/v2/server.(*Server).startGoRoutine"))
}

var quiet = slog.New(slog.DiscardHandler)

// env is a journal and a manager in a temporary directory.
type env struct {
	dir string
	j   *journal.Journal
	m   *propagate.Manager
}

func newEnv(t testing.TB) *env {
	t.Helper()
	e := &env{dir: t.TempDir()}
	j, err := journal.Open(journal.Options{Dir: filepath.Join(e.dir, "journal"), Fsync: journal.FsyncNever, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	m, err := propagate.New(propagate.Options{Journal: j, Dir: e.dir, Source: "semprop://test", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	e.j, e.m = j, m
	t.Cleanup(func() { m.Close(); j.Close() })
	return e
}

// publish publishes n events of typ, round robin over subjects files.
func (e *env) publish(t testing.TB, typ string, n, files int) []*event.Event {
	t.Helper()
	evs := make([]*event.Event, n)
	for i := range evs {
		evs[i] = &event.Event{Type: typ, Subject: fmt.Sprintf("/srv/f%d.md", i%files), Data: []byte(fmt.Sprintf(`{"n":%d}`, i))}
	}
	for i := 0; i < n; i += 100 {
		if err := e.m.PublishBatch(context.Background(), evs[i:min(i+100, n)]); err != nil {
			t.Fatal(err)
		}
	}
	return evs
}

// running is an Outputs value running in the background.
type running struct {
	o    *Outputs
	stop func() error
}

func start(t testing.TB, e *env, opts Options) *running {
	t.Helper()
	opts.Manager = e.m
	if opts.Dir == "" {
		opts.Dir = filepath.Join(e.dir, "outputs")
	}
	if opts.Logger == nil {
		opts.Logger = quiet
	}
	o, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- o.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(20 * time.Second):
				runErr = errors.New("Run did not return")
			}
		})
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	return &running{o: o, stop: stop}
}

// waitSent waits until output name has sent at least n events.
// waitCursor waits until output name has sent n events and its cursor
// has moved past them (at most 30 s).
func (r *running) waitCursor(t testing.TB, name string, n uint64) Info {
	t.Helper()
	in := r.waitSent(t, name, n)
	for deadline := time.Now().Add(30 * time.Second); in.Cursor < n; {
		if time.Now().After(deadline) {
			t.Fatalf("output %s: cursor %d, not at %d within 30s", name, in.Cursor, n)
		}
		time.Sleep(time.Millisecond)
		for _, i := range r.o.Infos() {
			if i.Name == name {
				in = i
			}
		}
	}
	return in
}

func (r *running) waitSent(t testing.TB, name string, n uint64) Info {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		for _, in := range r.o.Infos() {
			if in.Name == name && in.Sent+in.DeadLettered >= n {
				return in
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("output %s: %d events not sent within 30s: %+v", name, n, r.o.Infos())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func readLines(t testing.TB, path string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

func TestConfigValidate(t *testing.T) {
	file := &FileConfig{Path: "/tmp/x.ndjson"}
	for _, tc := range []struct {
		c    Config
		want string // "" valid, else a part of the error
	}{
		{Config{Name: "f", Type: "file", File: file}, ""},
		{Config{Name: "bad name", Type: "file", File: file}, "output name"},
		{Config{Name: "f", Type: "ftp"}, "type"},
		{Config{Name: "f", Type: "file"}, "path is required"},
		{Config{Name: "f", Type: "file", File: file, Types: []string{"fs..x"}}, "type"},
		{Config{Name: "f", Type: "file", File: file, Filter: "pid =="}, "filter"},
		{Config{Name: "f", Type: "file", File: file, Start: "middle"}, "start"},
		{Config{Name: "f", Type: "file", File: file, InFlight: 65}, "in_flight"},
		{Config{Name: "f", Type: "file", File: file, InFlight: -1}, "in_flight"},
		{Config{Name: "f", Type: "file", File: file, NATS: &NATSConfig{URL: "nats://x"}}, "more than one"},
		{Config{Name: "f", Type: "file", File: &FileConfig{Path: "/x", Compress: "gzip"}}, "compress"},
		{Config{Name: "n", Type: "nats", NATS: &NATSConfig{URL: "nats://x", Subject: "a.{bad}"}}, "unknown"},
		{Config{Name: "n", Type: "nats", NATS: &NATSConfig{URL: "nats://x", Subject: "a.{type}.{path}"}}, ""},
		{Config{Name: "k", Type: "kafka", Kafka: &KafkaConfig{Brokers: []string{"b:9092"}}}, "topic"},
		{Config{Name: "k", Type: "kafka", Kafka: &KafkaConfig{Brokers: []string{"b:9092"}, Topic: "t", SASL: &KafkaSASL{Mechanism: "GSSAPI"}}}, "sasl"},
		{Config{Name: "k", Type: "kafka", Kafka: &KafkaConfig{Brokers: []string{"b:9092"}, Topics: []KafkaTopic{{Types: "fs.*", Topic: "fs"}}}}, ""},
		{Config{Name: "w", Type: "webhook", Webhook: &WebhookConfig{URL: "ftp://x"}}, "url"},
		{Config{Name: "w", Type: "webhook", Webhook: &WebhookConfig{URL: "https://x/hook", Mode: "batch"}}, ""},
		{Config{Name: "s", Type: "syslog", Syslog: &SyslogConfig{Address: "x"}}, "address"},
		{Config{Name: "s", Type: "syslog", Syslog: &SyslogConfig{Address: "x:514", Template: "{{.Type"}}, "template"},
		{Config{Name: "r", Type: "file", File: file, Redact: &filter.RedactSpec{Rules: []filter.RedactRule{{Field: "nope", Action: "mask"}}}}, "redact"},
	} {
		err := tc.c.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("Validate(%+v) = %v, want nil", tc.c, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("Validate(%+v) = %v, want an error about %q", tc.c, err, tc.want)
		case err != nil && !errors.Is(err, ErrConfig):
			t.Errorf("Validate error %v does not wrap ErrConfig", err)
		}
	}
	if err := ValidateAll([]Config{{Name: "a", Type: "file", File: file}, {Name: "a", Type: "file", File: file}}); err == nil {
		t.Error("ValidateAll accepted two outputs named a")
	}
}

func TestSubjectMapping(t *testing.T) {
	for _, tc := range []struct {
		tmpl, typ, path, want string
	}{
		{"", "fs.write", "/srv/a/b.md", "semprop.fs.write.srv.a.b_md"},
		{"", "fs.write", "", "semprop.fs.write"},
		{"", "fs.write", "/a b/*/>/c", "semprop.fs.write.a_b._._.c"},
		{"", "fs.write", "//x//y/", "semprop.fs.write.x.y"},
		{"files.{path}.{type}", "fs.create", "/r.txt", "files.r_txt.fs.create"},
		{"all", "fs.create", "/r.txt", "all"},
	} {
		c := &NATSConfig{URL: "x", Subject: tc.tmpl}
		tm, err := parseSubjectTemplate(c.subject())
		if err != nil {
			t.Fatal(err)
		}
		if got := tm.expand(&event.Event{Type: tc.typ, Subject: tc.path}); got != tc.want {
			t.Errorf("subject(%q, %q, %q) = %q, want %q", tc.tmpl, tc.typ, tc.path, got, tc.want)
		}
	}
}

func TestFileOutputSelectorRedactionOrder(t *testing.T) {
	e := newEnv(t)
	path := filepath.Join(e.dir, "out", "events.ndjson")
	r := start(t, e, Options{Outputs: []Config{{
		Name: "f", Type: TypeFile, File: &FileConfig{Path: path},
		Types:  []string{"fs.write", "fs.create"},
		Path:   "/srv/**",
		Redact: &filter.RedactSpec{Rules: []filter.RedactRule{{Field: "subject", Action: "mask", Segments: []int{-1}}}},
	}}})
	e.publish(t, "fs.write", 300, 3)
	e.publish(t, "fs.delete", 50, 3) // not selected
	e.publish(t, "fs.create", 100, 3)
	info := r.waitSent(t, "f", 400)
	// The counters move before the cursor: wait for it too.
	for deadline := time.Now().Add(10 * time.Second); info.Cursor < 450 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
		info = r.o.Infos()[0]
	}
	if err := r.stop(); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	lines := readLines(t, path)
	if len(lines) != 400 {
		t.Fatalf("%d lines, want 400", len(lines))
	}
	var last float64
	for _, l := range lines {
		if l["type"] == "fs.delete" {
			t.Fatalf("unselected event forwarded: %v", l)
		}
		if l["subject"] != "/srv/***" {
			t.Fatalf("subject %v not redacted", l["subject"])
		}
		if s := l["seq"].(float64); s <= last {
			t.Fatalf("seq %v after %v: out of order", s, last)
		} else {
			last = s
		}
	}
	if info.Skipped != 50 || info.Cursor != 450 {
		t.Errorf("info: skipped %d cursor %d, want 50 and 450", info.Skipped, info.Cursor)
	}
}

// flaky is a sink that fails its first fails attempts, refuses the events
// whose subject is in reject, and records what it accepted.
type flaky struct {
	mu       sync.Mutex
	fails    int
	reject   map[string]bool
	attempts int
	got      []uint64
}

func (f *flaky) Send(_ context.Context, evs []*event.Event) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.attempts++
	if f.fails > 0 {
		f.fails--
		return &RetryAfterError{After: time.Millisecond, Err: errors.New("flaky: down")}
	}
	for _, ev := range evs {
		if f.reject[ev.Subject] {
			return fmt.Errorf("%w: flaky: %s", ErrRejected, ev.Subject)
		}
	}
	for _, ev := range evs {
		f.got = append(f.got, ev.Seq)
	}
	return nil
}

func (f *flaky) Close() error { return nil }

func TestRetryAndDeadLetter(t *testing.T) {
	e := newEnv(t)
	fl := &flaky{fails: 4, reject: map[string]bool{"/srv/f3.md": true}}
	r := start(t, e, Options{
		Outputs: []Config{{Name: "x", Type: TypeFile, File: &FileConfig{Path: "/unused"}, BatchSize: 7,
			Retry: RetryConfig{Initial: time.Millisecond, Max: 4 * time.Millisecond}}},
		sinkFor: func(Config) (sink, error) { return fl, nil },
	})
	e.publish(t, "fs.write", 50, 10)
	info := r.waitSent(t, "x", 50)
	if info.DeadLettered != 5 || info.Sent != 45 {
		t.Errorf("sent %d dead-lettered %d, want 45 and 5", info.Sent, info.DeadLettered)
	}
	if info.Retries < 4 {
		t.Errorf("retries %d, want at least 4", info.Retries)
	}
	fl.mu.Lock()
	got := append([]uint64(nil), fl.got...)
	fl.mu.Unlock()
	want := []uint64{}
	for s := uint64(1); s <= 50; s++ {
		if (s-1)%10 != 3 {
			want = append(want, s)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("accepted %v, want %v", got, want)
	}
	dl := readLines(t, filepath.Join(e.dir, "outputs", "x", "deadletter.ndjson"))
	if len(dl) != 5 {
		t.Fatalf("%d dead letters, want 5", len(dl))
	}
	for _, l := range dl {
		ev := l["event"].(map[string]any)
		if ev["subject"] != "/srv/f3.md" || !strings.Contains(l["error"].(string), "rejected") {
			t.Errorf("dead letter %v: want the refused /srv/f3.md with its error", l)
		}
	}
}

func TestAttemptsBoundDeadLetters(t *testing.T) {
	e := newEnv(t)
	fl := &flaky{fails: 1 << 30}
	r := start(t, e, Options{
		Outputs: []Config{{Name: "x", Type: TypeFile, File: &FileConfig{Path: "/unused"},
			Retry: RetryConfig{Initial: time.Millisecond, Max: time.Millisecond, Attempts: 3}}},
		sinkFor: func(Config) (sink, error) { return fl, nil },
	})
	e.publish(t, "fs.write", 10, 2)
	info := r.waitSent(t, "x", 10)
	if info.DeadLettered != 10 || info.Sent != 0 {
		t.Errorf("sent %d dead-lettered %d, want 0 and 10", info.Sent, info.DeadLettered)
	}
}

func TestResumeAfterStopAndStart(t *testing.T) {
	e := newEnv(t)
	path := filepath.Join(e.dir, "events.ndjson")
	cfg := []Config{{Name: "f", Type: TypeFile, File: &FileConfig{Path: path}, Start: "all"}}
	e.publish(t, "fs.write", 100, 4) // before the output exists: Start all takes them
	r := start(t, e, Options{Outputs: cfg})
	r.waitSent(t, "f", 100)
	if err := r.stop(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v, want context.Canceled", err)
	}
	e.publish(t, "fs.write", 100, 4) // while it is stopped
	r = start(t, e, Options{Outputs: cfg})
	info := r.waitSent(t, "f", 200)
	_ = r.stop()
	if n := len(readLines(t, path)); n != 200 {
		t.Errorf("%d lines after a restart, want 200 (no loss, no duplicate after a clean stop)", n)
	}
	if info.Cursor != 200 {
		t.Errorf("cursor %d, want 200", info.Cursor)
	}
}

func TestStartNewSkipsOldEvents(t *testing.T) {
	e := newEnv(t)
	path := filepath.Join(e.dir, "events.ndjson")
	e.publish(t, "fs.write", 10, 1)
	r := start(t, e, Options{Outputs: []Config{{Name: "f", Type: TypeFile, File: &FileConfig{Path: path}}}})
	e.publish(t, "fs.write", 5, 1)
	r.waitSent(t, "f", 5)
	_ = r.stop()
	lines := readLines(t, path)
	if len(lines) != 5 || lines[0]["seq"].(float64) != 11 {
		t.Errorf("got %d lines from seq %v, want 5 from 11", len(lines), lines[0]["seq"])
	}
}
