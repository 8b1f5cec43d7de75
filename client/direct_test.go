package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/semprop/semprop/client"
	"github.com/semprop/semprop/event"
)

// fakeIngest answers publishes as the server does, recording what it got.
type fakeIngest struct {
	mu      sync.Mutex
	remotes map[string]int // requests by client address: reuse shows
	paths   []string
	auth    []string
	bodies  []string
	status  int  // answer with this status (0: 200)
	chunked bool // answer without Content-Length
}

func (f *fakeIngest) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	if f.remotes == nil {
		f.remotes = make(map[string]int)
	}
	f.remotes[r.RemoteAddr]++
	f.paths = append(f.paths, r.URL.Path)
	f.auth = append(f.auth, r.Header.Get("Authorization"))
	f.bodies = append(f.bodies, string(b))
	status, chunked := f.status, f.chunked
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if status != 0 {
		w.WriteHeader(status)
		fmt.Fprint(w, `{"error":"no such thing","field":"type"}`)
		return
	}
	n := 1
	if strings.HasPrefix(string(b), "[") {
		n = strings.Count(string(b), `"specversion"`)
	}
	answer := `{"seqs":[` + strings.TrimSuffix(strings.Repeat("7,", n), ",") + "]}\n"
	if chunked {
		for i := range answer { // flushed piece by piece: chunked
			w.Write([]byte{answer[i]})
			w.(http.Flusher).Flush()
		}
		return
	}
	w.Header().Set("Content-Length", fmt.Sprint(len(answer)))
	fmt.Fprint(w, answer)
}

// TestDirectPublish: publishes to a plain-HTTP server reach it as HTTP/1.1
// requests with the token, the base URL's path, and the body; a connection
// carries publish after publish, including after an error answer and an
// answer of unknown length.
func TestDirectPublish(t *testing.T) {
	f := &fakeIngest{}
	hs := httptest.NewServer(f)
	defer hs.Close()
	c := client.New(hs.URL+"/prefix/", "sekrit")
	ctx := context.Background()
	for i := range 5 {
		seq, err := c.Publish(ctx, &event.Event{Type: "t.x", Subject: fmt.Sprintf("/%d", i)})
		if err != nil || seq != 7 {
			t.Fatalf("Publish = %d, %v; want 7", seq, err)
		}
	}
	seqs, err := c.PublishBatch(ctx, []*event.Event{{Type: "t.x"}, {Type: "t.y"}, {Type: "t.z"}})
	if err != nil || fmt.Sprint(seqs) != "[7 7 7]" {
		t.Fatalf("PublishBatch = %v, %v; want [7 7 7]", seqs, err)
	}
	f.mu.Lock()
	f.status = http.StatusBadRequest
	f.mu.Unlock()
	_, err = c.Publish(ctx, &event.Event{Type: "t.x"})
	var se *client.Error
	if !errors.As(err, &se) || se.Status != 400 || se.Message != "no such thing" || se.Field != "type" {
		t.Fatalf("Publish answered 400 = %v, want *client.Error{400, no such thing, type}", err)
	}
	f.mu.Lock()
	f.status, f.chunked = 0, true
	f.mu.Unlock()
	for range 2 {
		if seqs, err := c.PublishBatch(ctx, []*event.Event{{Type: "t.x"}, {Type: "t.y"}}); err != nil || fmt.Sprint(seqs) != "[7 7]" {
			t.Fatalf("PublishBatch with a chunked answer = %v, %v; want [7 7]", seqs, err)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.remotes) != 1 {
		t.Errorf("publishes came on %d connections (%v), want 1 kept alive", len(f.remotes), f.remotes)
	}
	for i, p := range f.paths {
		if p != "/prefix/v1/events" || f.auth[i] != "Bearer sekrit" {
			t.Fatalf("request %d: path %q, Authorization %q; want /prefix/v1/events, Bearer sekrit", i, p, f.auth[i])
		}
	}
	ev := new(event.Event)
	if err := ev.UnmarshalJSON([]byte(f.bodies[4])); err != nil || ev.Subject != "/4" || ev.Source != client.DefaultSource() {
		t.Fatalf("body %q: %v, %+v", f.bodies[4], err, ev)
	}
}

// TestDirectServerClosedIdle: a kept connection the server closed (idle
// timeout, restart) is noticed before it is used: the publish goes out on
// a new connection and succeeds.
func TestDirectServerClosedIdle(t *testing.T) {
	f := &fakeIngest{}
	hs := httptest.NewUnstartedServer(f)
	hs.Config.IdleTimeout = 20 * time.Millisecond
	hs.Start()
	defer hs.Close()
	c := client.New(hs.URL, "")
	ctx := context.Background()
	for i := range 3 {
		if _, err := c.Publish(ctx, &event.Event{Type: "t.x"}); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
		time.Sleep(100 * time.Millisecond) // the server closes the idle connection
	}
	hs.CloseClientConnections()
	time.Sleep(20 * time.Millisecond)
	if _, err := c.Publish(ctx, &event.Event{Type: "t.x"}); err != nil {
		t.Fatalf("publish after the server closed every connection: %v", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.bodies) != 4 {
		t.Fatalf("server got %d publishes, want 4 (each exactly once)", len(f.bodies))
	}
}

// TestDirectContext: a publish that waits for an answer ends when its
// context does, with the context's error.
func TestDirectContext(t *testing.T) {
	release := make(chan struct{})
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		<-release
	}))
	defer hs.Close()
	defer close(release)
	c := client.New(hs.URL, "")
	for _, mk := range []func() (context.Context, context.CancelFunc){
		func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 100*time.Millisecond)
		},
		func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(100*time.Millisecond, cancel)
			return ctx, cancel
		},
	} {
		ctx, cancel := mk()
		start := time.Now()
		_, err := c.Publish(ctx, &event.Event{Type: "t.x"})
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
			t.Fatalf("Publish with a context that ends = %v, want the context's error", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("Publish returned %v after its context ended", d)
		}
	}
}

// TestPublishThroughCallersClient: a client of NewWithHTTPClient publishes
// through the caller's http.Client (its TLS, proxy or tracing), not on
// connections of its own.
func TestPublishThroughCallersClient(t *testing.T) {
	hs := httptest.NewServer(&fakeIngest{})
	defer hs.Close()
	var trips atomic.Int32
	rt := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		trips.Add(1)
		return http.DefaultTransport.RoundTrip(r)
	})
	c := client.NewWithHTTPClient(hs.URL, "", &http.Client{Transport: rt})
	if _, err := c.Publish(context.Background(), &event.Event{Type: "t.x"}); err != nil {
		t.Fatal(err)
	}
	if trips.Load() != 1 {
		t.Fatalf("%d round trips through the caller's client, want 1", trips.Load())
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestDirectClosesIdle: connections left idle are closed after a while
// even when no publish comes to reuse them (not left half closed once the
// server times them out).
func TestDirectClosesIdle(t *testing.T) {
	defer client.SetDirectIdleMax(50 * time.Millisecond)()
	var closed atomic.Int32
	hs := httptest.NewUnstartedServer(&fakeIngest{})
	hs.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateClosed {
			closed.Add(1)
		}
	}
	hs.Start()
	defer hs.Close()
	c := client.New(hs.URL, "")
	var wg sync.WaitGroup
	for range 3 { // up to three connections at once
		wg.Go(func() {
			if _, err := c.Publish(context.Background(), &event.Event{Type: "t.x"}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for closed.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("idle connections still open 5 s after their idle limit of 50 ms")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := c.Publish(context.Background(), &event.Event{Type: "t.x"}); err != nil {
		t.Fatalf("publish after the idle connections were closed: %v", err)
	}
}

// TestDirectInformational: an informational answer (103 Early Hints)
// before the real one is skipped, as net/http's transport does.
func TestDirectInformational(t *testing.T) {
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Link", "</x>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"seqs":[42]}`)
	}))
	defer hs.Close()
	seq, err := client.New(hs.URL, "").Publish(context.Background(), &event.Event{Type: "t.x"})
	if err != nil || seq != 42 {
		t.Fatalf("Publish after 103 Early Hints = %d, %v; want 42", seq, err)
	}
}
