package api

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/semprop/semprop/event"
)

// slowPost starts a POST of a body of n bytes on a new connection and sends
// only its first kilobyte; the rest follows when rest is closed. It returns
// the response's status (0 if the connection ended without one).
func slowPost(t *testing.T, addr, path string, n int, rest <-chan struct{}) <-chan int {
	t.Helper()
	out := make(chan int, 1)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	go func() {
		defer close(out)
		fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/cloudevents+json\r\nContent-Length: %d\r\n\r\n", path, n)
		c.Write([]byte(strings.Repeat(" ", 1024)))
		respc := make(chan int, 1)
		go func() {
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				respc <- 0
				return
			}
			resp.Body.Close()
			respc <- resp.StatusCode
		}()
		select {
		case code := <-respc:
			out <- code // answered before the body was sent
			return
		case <-rest:
		}
		c.Write([]byte(strings.Repeat(" ", n-1024)))
		out <- <-respc
	}()
	return out
}

func sum(m map[int]int) (n int) {
	for _, v := range m {
		n += v
	}
	return n
}

// Item 4: 40 slow 15 MiB bodies held 750 MB. Bodies now reserve their
// size in a budget shared by all requests; those that cannot reserve it
// within BodyWait are answered 503 with Retry-After without being read.
func TestBodyBudgetBoundsSlowBodies(t *testing.T) {
	const (
		body   = 1 << 20
		budget = 4 << 20
		n      = 12
	)
	ts := newTestServer(t, Options{MaxBody: 2 << 20, HTTP: HTTPLimits{MaxInflightBody: budget, BodyWait: 300 * time.Millisecond}})
	addr := strings.TrimPrefix(ts.URL, "http://")
	rest := make(chan struct{})
	var codes []<-chan int
	for range n {
		codes = append(codes, slowPost(t, addr, "/v1/events", body, rest))
	}
	all := make(chan int, n)
	for _, c := range codes {
		go func() { all <- <-c }()
	}
	// Those beyond the budget are answered while the others still send.
	count := map[int]int{}
	timeout := time.After(10 * time.Second)
early:
	for got := 0; got < n-budget/body; got++ {
		select {
		case code := <-all:
			count[code]++
		case <-timeout:
			break early
		}
	}
	time.Sleep(100 * time.Millisecond) // one more would show up now
	close(rest)
	for range n - sum(count) {
		count[<-all]++
	}
	if count[http.StatusServiceUnavailable] != n-budget/body {
		t.Errorf("statuses %v: want %d of 503 (budget for %d bodies of %d)", count, n-budget/body, budget/body, n)
	}
	if high := ts.api.body.high.Load(); high > budget || high < body {
		t.Errorf("body bytes held at most %d, want 1 MiB..%d", high, budget)
	}
	if used := ts.api.body.inUse(); used != 0 {
		t.Errorf("%d body bytes still reserved after every request ended", used)
	}
}

func TestBodyBudgetRetryAfter(t *testing.T) {
	ts := newTestServer(t, Options{MaxBody: 1 << 20, HTTP: HTTPLimits{MaxInflightBody: (1 << 20) + 1, BodyWait: 50 * time.Millisecond}})
	addr := strings.TrimPrefix(ts.URL, "http://")
	rest := make(chan struct{})
	first := slowPost(t, addr, "/v1/events", 1<<20, rest)
	time.Sleep(200 * time.Millisecond)
	req, _ := http.NewRequest("POST", ts.URL+"/v1/subscriptions", strings.NewReader(`{"name":"x"}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Errorf("while the budget is held: %d Retry-After %q, want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	close(rest)
	<-first
	// Once released, the same request passes.
	req, _ = http.NewRequest("POST", ts.URL+"/v1/subscriptions", strings.NewReader(`{"name":"x"}`))
	req.Header.Set("Content-Type", "application/json")
	if resp, err = http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Errorf("after release: %d, want 201", resp.StatusCode)
	}
}

// A chunked body (no Content-Length) reserves as it arrives and is cut at
// MaxBody.
func TestChunkedBody(t *testing.T) {
	ts := newTestServer(t, Options{MaxBody: 200 << 10})
	for _, tc := range []struct {
		size int
		want int
	}{{100 << 10, 200}, {200 << 10, 200}, {200<<10 + 1, 413}, {1 << 20, 413}} {
		const head, tail = `{"specversion":"1.0","id":"1","source":"a","type":"app.x","data":"`, `"}`
		ev := head + strings.Repeat("a", tc.size-len(head)-len(tail)) + tail
		pr, pw := io.Pipe()
		go func() {
			for b := []byte(ev); len(b) > 0; {
				k := min(len(b), 7000)
				pw.Write(b[:k])
				b = b[k:]
			}
			pw.Close()
		}()
		req, _ := http.NewRequest("POST", ts.URL+"/v1/events", pr)
		req.Header.Set("Content-Type", "application/cloudevents+json")
		resp, err := http.DefaultClient.Do(req)
		pr.Close()
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("chunked body of %d bytes: %d %s, want %d", len(ev), resp.StatusCode, b, tc.want)
		}
	}
	if used := ts.api.body.inUse(); used != 0 {
		t.Errorf("%d body bytes still reserved", used)
	}
}

// A body that stalls is cut after BodyTimeout instead of holding its
// connection, goroutine and reservation forever.
func TestBodyTimeout(t *testing.T) {
	ts := newTestServer(t, Options{HTTP: HTTPLimits{BodyTimeout: 300 * time.Millisecond}})
	addr := strings.TrimPrefix(ts.URL, "http://")
	never := make(chan struct{})
	code := slowPost(t, addr, "/v1/events", 64<<10, never)
	select {
	case c := <-code:
		if c != 0 && c != http.StatusBadRequest {
			t.Errorf("stalled body answered %d, want 400 or a closed connection", c)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a stalled body still holds its request after 5s (BodyTimeout 300ms)")
	}
	deadline := time.Now().Add(2 * time.Second)
	for ts.api.body.inUse() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if used := ts.api.body.inUse(); used != 0 {
		t.Errorf("%d body bytes still reserved", used)
	}
}

// BodyTimeout does not cut streams or long polls: they are long-lived
// responses, not slow requests.
func TestBodyTimeoutSparesStreams(t *testing.T) {
	ts := newTestServer(t, Options{HTTP: HTTPLimits{BodyTimeout: 100 * time.Millisecond}, Heartbeat: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", ts.URL+"/v1/stream", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	time.Sleep(400 * time.Millisecond)
	publish(t, ts, &event.Event{Source: "app://t", Type: "app.late", Subject: "/x"})
	sc := bufio.NewScanner(resp.Body)
	got := ""
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "event: ") {
			got = sc.Text()
			break
		}
	}
	if got != "event: app.late" {
		t.Fatalf("stream after BodyTimeout: got %q (%v), want the event published later", got, sc.Err())
	}
}

// A handler that reads its body to the end and then takes longer than
// BodyTimeout keeps its request: the deadline ends with the body.
func TestBodyTimeoutEndsWithTheBody(t *testing.T) {
	ts := newTestServer(t, Options{HTTP: HTTPLimits{BodyTimeout: 100 * time.Millisecond}})
	ts.api.Handle("POST /slow", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		select {
		case <-r.Context().Done():
			w.WriteHeader(http.StatusGatewayTimeout)
		case <-time.After(400 * time.Millisecond):
			w.Write([]byte("ok"))
		}
	}))
	resp, err := http.Post(ts.URL+"/slow", "application/json", strings.NewReader(`{"a":1}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("handler slower than BodyTimeout after reading its body: %d, want 200", resp.StatusCode)
	}
}

func TestLimitListener(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := LimitListener(inner, 2)
	accepted := make(chan net.Conn, 10)
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	})
	var clients []net.Conn
	for range 3 {
		c, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	recv := func(d time.Duration) net.Conn {
		select {
		case c := <-accepted:
			return c
		case <-time.After(d):
			return nil
		}
	}
	a, b := recv(2*time.Second), recv(2*time.Second)
	if a == nil || b == nil {
		t.Fatal("the first two connections were not accepted")
	}
	if c := recv(200 * time.Millisecond); c != nil {
		t.Fatal("a third connection was accepted above the cap of 2")
	}
	a.Close()
	a.Close() // closing twice releases once
	c := recv(2 * time.Second)
	if c == nil {
		t.Fatal("the third connection was not accepted after one closed")
	}
	if d := recv(200 * time.Millisecond); d != nil {
		t.Fatal("closing one connection twice released two slots")
	}
	ln.Close()
	wg.Wait() // Accept returned
	b.Close()
	c.Close()
	for _, c := range clients {
		c.Close()
	}
}

// NewHTTPServer and LimitListener together: idle keep-alive connections
// are closed after IdleTimeout, and headers must come within
// ReadHeaderTimeout (a slowloris holds nothing).
func TestNewHTTPServerTimeouts(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := HTTPLimits{ReadHeaderTimeout: 200 * time.Millisecond, IdleTimeout: 300 * time.Millisecond, MaxConns: 1}
	hs := NewHTTPServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}), l, quiet)
	var wg sync.WaitGroup
	wg.Go(func() { hs.Serve(LimitListener(inner, l.MaxConns)) })
	t.Cleanup(func() { hs.Close(); wg.Wait() })

	// A connection that never finishes its headers is closed.
	c, err := net.Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n"))
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.ReadAll(c); err != nil {
		t.Fatalf("headers never finished: the connection is still open after 3s: %v", err)
	}
	// The only slot is free again: a request is served; the idle
	// connection it leaves is closed after IdleTimeout.
	c2, err := net.Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	c2.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	c2.SetReadDeadline(time.Now().Add(3 * time.Second))
	br := bufio.NewReader(c2)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if _, err := io.ReadAll(br); err != nil {
		t.Fatalf("idle connection still open after 3s (IdleTimeout 300ms): %v", err)
	}
}

func TestByteBudgetFIFO(t *testing.T) {
	b := newByteBudget(10)
	ctx := context.Background()
	if !b.acquire(ctx, 8) {
		t.Fatal("acquire 8 of 10 failed")
	}
	big := make(chan bool)
	go func() { big <- b.acquire(ctx, 10) }()
	time.Sleep(50 * time.Millisecond)
	// A small request behind a waiting large one waits too.
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if b.acquire(short, 1) {
		t.Error("a small acquire overtook a waiting large one")
	}
	b.release(8)
	if !<-big {
		t.Fatal("the large acquire failed after release")
	}
	if h := b.high.Load(); h != 10 {
		t.Errorf("high-water = %d, want 10", h)
	}
	b.release(10)
	if u := b.inUse(); u != 0 {
		t.Errorf("in use = %d, want 0", u)
	}
}
