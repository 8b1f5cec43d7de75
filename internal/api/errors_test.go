package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/auth"
	"github.com/semprop/semprop/internal/journal"
	"github.com/semprop/semprop/internal/propagate"
)

// Every error is JSON, including the mux's own 404 and 405.
func TestUnknownRoutesJSON(t *testing.T) {
	ts := newTestServer(t, Options{})
	for _, tc := range []struct {
		method, path string
		want         int
		allow        string
	}{
		{"GET", "/nope", 404, ""},
		{"GET", "/v1/events/x/y", 404, ""},
		{"PUT", "/v1/events", 405, "GET, HEAD, POST"},
		{"DELETE", "/v1/routes", 405, "GET, HEAD, POST"},
		{"PATCH", "/healthz", 405, "GET, HEAD"},
	} {
		req, _ := http.NewRequest(tc.method, ts.URL+tc.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var e apiError
		derr := json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != tc.want || resp.Header.Get("Content-Type") != "application/json" || derr != nil || e.Error == "" {
			t.Errorf("%s %s = %d %q %+v (%v), want %d JSON", tc.method, tc.path, resp.StatusCode, resp.Header.Get("Content-Type"), e, derr, tc.want)
		}
		if got := resp.Header.Get("Allow"); got != tc.allow {
			t.Errorf("%s %s: Allow %q, want %q", tc.method, tc.path, got, tc.allow)
		}
	}
}

// /readyz shows the journal's position only to authenticated callers.
func TestReadyzSeqsNeedAuth(t *testing.T) {
	a, err := auth.New([]auth.TokenSpec{{Name: "sub", Token: tokSub, Scopes: []string{"subscribe:>"}}})
	if err != nil {
		t.Fatal(err)
	}
	ts := newTestServer(t, Options{Auth: a})
	for _, tc := range []struct {
		token string
		seqs  bool
	}{{"", false}, {"wrong-token-0123456789abc", false}, {tokSub, true}} {
		req, _ := http.NewRequest("GET", ts.URL+"/readyz", nil)
		if tc.token != "" {
			req.Header.Set("Authorization", "Bearer "+tc.token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body map[string]any
		json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		_, has := body["last_seq"]
		_, hasDurable := body["durable_seq"]
		if resp.StatusCode != 200 || body["ready"] != true || has != tc.seqs || hasDurable != tc.seqs {
			t.Errorf("token %q: %d %v, want ready with seqs %v", tc.token, resp.StatusCode, body, tc.seqs)
		}
	}
	// Without tokens everyone may read everything: the seqs are shown.
	open := newTestServer(t, Options{})
	st, err := open.c.Ready(context.Background())
	if err != nil || !st.Ready {
		t.Fatalf("Ready() = %+v, %v", st, err)
	}
	publish(t, open, &event.Event{Source: "app://t", Type: "app.x", Subject: "/x"})
	if st, _ := open.c.Ready(context.Background()); st.LastSeq != 1 {
		t.Errorf("without tokens last_seq = %d, want 1", st.LastSeq)
	}
}

// Item 14: a routes body over 1 MiB was 400 (malformed JSON), not 413.
func TestRoutesBodyTooLarge(t *testing.T) {
	ts := newTestServer(t, Options{})
	body := `[` + strings.Repeat(`{"name":"r","type":"app.x","targets":["x"]},`, (1<<20)/40) + `{}]`
	resp, err := http.Post(ts.URL+"/v1/routes", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("POST /v1/routes with %d bytes = %d %s, want 413", len(body), resp.StatusCode, b)
	}
}

// logCount is a slog handler that counts records and keeps them.
type logCount struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (l *logCount) Enabled(context.Context, slog.Level) bool { return true }
func (l *logCount) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	l.recs = append(l.recs, r.Clone())
	l.mu.Unlock()
	return nil
}
func (l *logCount) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logCount) WithGroup(string) slog.Handler      { return l }
func (l *logCount) n() int                             { l.mu.Lock(); defer l.mu.Unlock(); return len(l.recs) }

// Item 10: storage errors were answered 500 with the server's file path,
// and logged once per request.
func TestStorageErrors(t *testing.T) {
	seg := "/var/lib/semprop/journal/00000000000000000001.seg"
	for _, tc := range []struct {
		name string
		err  error
		want int
	}{
		{"disk full", fmt.Errorf("journal: write %s: %w", seg, &fs.PathError{Op: "write", Path: seg, Err: syscall.ENOSPC}), http.StatusInsufficientStorage},
		{"quota", fmt.Errorf("journal: write %s: %w", seg, &fs.PathError{Op: "write", Path: seg, Err: syscall.EDQUOT}), http.StatusInsufficientStorage},
		{"i/o error", fmt.Errorf("journal: fsync %s: %w", seg, &fs.PathError{Op: "fsync", Path: seg, Err: syscall.EIO}), http.StatusServiceUnavailable},
		{"closed", fmt.Errorf("append %s: %w", seg, journal.ErrClosed), http.StatusServiceUnavailable},
		{"journal no space", fmt.Errorf("propagate: journal: %w", journal.ErrNoSpace), http.StatusInsufficientStorage},
		{"journal i/o", fmt.Errorf("propagate: journal: %w", journal.ErrIO), http.StatusServiceUnavailable},
		{"other", fmt.Errorf("something at %s broke", seg), http.StatusInternalServerError},
		{"unavailable", propagate.ErrUnavailable, http.StatusServiceUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := newTestServer(t, Options{})
			logs := &logCount{}
			ts.api.log = throttledLogger(slog.New(logs))
			for range 100 {
				w := httptest.NewRecorder()
				ts.api.writeErr(w, tc.err)
				if w.Code != tc.want {
					t.Fatalf("writeErr(%v) = %d, want %d", tc.err, w.Code, tc.want)
				}
				if strings.Contains(w.Body.String(), "/var/lib") || strings.Contains(w.Body.String(), ".seg") {
					t.Fatalf("writeErr(%v) body %q names a server path", tc.err, w.Body)
				}
				var e apiError
				if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Error == "" {
					t.Fatalf("body %q: %v", w.Body, err)
				}
			}
			if n := logs.n(); n > 5 {
				t.Errorf("100 identical failures wrote %d log records, want at most 5", n)
			}
		})
	}
}

// Item 10 end to end: a journal on a full file system answers 507 (no
// path in the body) and /readyz reports not ready.
func TestDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	filler := filepath.Join(dir, "filler")
	if err := os.WriteFile(filler, make([]byte, 512<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	j, err := journal.Open(journal.Options{Dir: filepath.Join(dir, "journal"), Fsync: journal.FsyncAlways, SegmentSize: 256 << 10, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	m, err := propagate.New(propagate.Options{Journal: j, Dir: dir, Source: "semprop://test", Logger: quiet})
	if err != nil {
		j.Close()
		t.Fatal(err)
	}
	s := New(Options{Manager: m, Logger: quiet})
	s.SetReady(true, "")
	hs := httptest.NewServer(s)
	t.Cleanup(func() { s.Close(); hs.Close(); m.Close(); j.Close() })

	data := `"` + strings.Repeat("x", 60<<10) + `"`
	var status int
	var body []byte
	for i := range 100 {
		ev := fmt.Sprintf(`{"specversion":"1.0","id":"%d","source":"a","type":"app.x","data":%s}`, i, data)
		resp, err := http.Post(hs.URL+"/v1/events", event.MediaType, strings.NewReader(ev))
		if err != nil {
			t.Fatal(err)
		}
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if status = resp.StatusCode; status != 200 {
			break
		}
	}
	if status != http.StatusInsufficientStorage {
		t.Fatalf("publishing into a full 1 MiB file system: %d %s, want 507", status, body)
	}
	if bytes.Contains(body, []byte(dir)) {
		t.Errorf("507 body %s names the journal's directory", body)
	}
	resp, err := http.Get(hs.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	rb, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || !bytes.Contains(rb, []byte("no space")) || bytes.Contains(rb, []byte(dir)) {
		t.Errorf("/readyz with a full disk = %d %s, want 503 saying no space, without paths", resp.StatusCode, rb)
	}
	// Space is freed: the journal retries on its own and the server is
	// ready again, without a restart.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(hs.URL + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		rb, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz 15s after space was freed: %d %s, want 200", resp.StatusCode, rb)
		}
		time.Sleep(100 * time.Millisecond)
	}
	ev := `{"specversion":"1.0","id":"after","source":"a","type":"app.x","data":1}`
	resp, err = http.Post(hs.URL+"/v1/events", event.MediaType, strings.NewReader(ev))
	if err != nil {
		t.Fatal(err)
	}
	rb, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("publish after space was freed: %d %s, want 200", resp.StatusCode, rb)
	}
}

func TestReadyzHealth(t *testing.T) {
	var sick error
	var mu sync.Mutex
	ts := newTestServer(t, Options{Health: func() error { mu.Lock(); defer mu.Unlock(); return sick }})
	get := func() (int, string) {
		resp, err := http.Get(ts.URL + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(b)
	}
	if code, b := get(); code != 200 {
		t.Fatalf("healthy: %d %s", code, b)
	}
	mu.Lock()
	sick = errors.New("capture: fanotify overflow")
	mu.Unlock()
	if code, b := get(); code != 503 || !strings.Contains(b, "fanotify overflow") {
		t.Errorf("unhealthy: %d %s, want 503 with the reason", code, b)
	}
}

func TestThrottle(t *testing.T) {
	now := time.Unix(0, 0)
	th := newThrottle(time.Minute, 2)
	th.now = func() time.Time { return now }
	var got []string
	for i := range 5 {
		ok, sup := th.allow("k")
		got = append(got, fmt.Sprintf("%v %v %v", i, ok, sup))
	}
	now = now.Add(time.Minute)
	ok, sup := th.allow("k")
	got = append(got, fmt.Sprintf("later %v %v", ok, sup))
	ok, sup = th.allow("other")
	got = append(got, fmt.Sprintf("other %v %v", ok, sup))
	want := []string{"0 true 0", "1 true 0", "2 false 0", "3 false 0", "4 false 0", "later true 3", "other true 0"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("allow sequence = %q, want %q", got, want)
	}
	for i := range 2 * maxThrottleKeys {
		th.allow(fmt.Sprint(i))
	}
	if n := len(th.keys); n > maxThrottleKeys {
		t.Errorf("throttle holds %d keys, want at most %d", n, maxThrottleKeys)
	}
}

// Item 14: every failed TLS handshake was logged. The error log groups
// lines that differ only in the peer address.
func TestErrorLogThrottled(t *testing.T) {
	logs := &logCount{}
	el := NewErrorLog(slog.New(logs))
	for i := range 1000 {
		el.Printf("http: TLS handshake error from 127.0.0.1:%d: EOF", 40000+i)
	}
	el.Printf("http: Accept error: too many open files; retrying in 5ms")
	if n := logs.n(); n != 6 {
		t.Errorf("1000 handshake errors and one accept error wrote %d records, want 5+1", n)
	}
}

func TestTLSHandshakeErrorsThrottled(t *testing.T) {
	logs := &logCount{}
	srv := httptest.NewUnstartedServer(http.NotFoundHandler())
	srv.Config = NewHTTPServer(http.NotFoundHandler(), HTTPLimits{}, slog.New(logs))
	srv.StartTLS()
	t.Cleanup(srv.Close)
	addr := strings.TrimPrefix(srv.URL, "https://")
	for range 50 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")) // not a TLS hello
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		io.ReadAll(c)
		c.Close()
	}
	srv.Close()
	if n := logs.n(); n == 0 || n > 5 {
		t.Errorf("50 failed handshakes wrote %d log records, want 1..5", n)
	}
}

func TestPublicMessage(t *testing.T) {
	ts := newTestServer(t, Options{})
	seg := "/var/lib/semprop/journal/00000000000000000001.seg"
	for _, err := range []error{
		fmt.Errorf("read %s: %w", seg, &fs.PathError{Op: "read", Path: seg, Err: syscall.EIO}),
		fmt.Errorf("%w: %s at offset 12", journal.ErrCorrupt, seg),
		fmt.Errorf("%w: %s", journal.ErrNoSpace, seg),
	} {
		if msg := ts.api.publicMessage(err); strings.Contains(msg, "/var/lib") {
			t.Errorf("publicMessage(%v) = %q names a server path", err, msg)
		}
	}
	if msg := ts.api.publicMessage(propagate.ErrNoConsumer); msg != propagate.ErrNoConsumer.Error() {
		t.Errorf("publicMessage(ErrNoConsumer) = %q, want the error's text", msg)
	}
}
