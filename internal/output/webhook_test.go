package output

import (
	"context"
	"crypto/hmac"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/semprop/semprop/event"
)

// hookServer is a webhook receiver that records what it got and can be
// told to answer with an error status for a while.
type hookServer struct {
	mu      sync.Mutex
	recs    []received
	headers []http.Header
	bodies  [][]byte
	fail    int // answer failStatus this many more times
	status  int
	retry   string // Retry-After of the failures
	reject  string // answer 400 to a binary-mode event of this ce-subject
}

func (h *hookServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.fail > 0 {
		h.fail--
		if h.retry != "" {
			w.Header().Set("Retry-After", h.retry)
		}
		w.WriteHeader(h.status)
		return
	}
	if h.reject != "" && r.Header.Get("ce-subject") == h.reject {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	h.headers = append(h.headers, r.Header.Clone())
	h.bodies = append(h.bodies, body)
	if r.Header.Get("Content-Type") == ctBatch {
		evs, err := event.ParseJSONBatch(body)
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		for _, ev := range evs {
			seq, _ := ev.Attr("seq")
			s, _ := strconv.ParseUint(seq, 10, 64)
			if s == 0 {
				s = ev.Seq
			}
			h.recs = append(h.recs, received{Seq: s, Subject: ev.Subject})
		}
		return
	}
	s, _ := strconv.ParseUint(r.Header.Get("ce-seq"), 10, 64)
	h.recs = append(h.recs, received{Seq: s, Subject: r.Header.Get("ce-subject")})
}

func (h *hookServer) got() []received {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]received(nil), h.recs...)
}

func TestWebhookBinaryModeSigned(t *testing.T) {
	e := newEnv(t)
	h := &hookServer{}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	r := start(t, e, Options{Outputs: []Config{{Name: "w", Type: TypeWebhook,
		Webhook: &WebhookConfig{URL: srv.URL + "/hook", Secret: "s3cret", Headers: map[string]string{"Authorization": "Bearer x"}}}}})
	ev := &event.Event{Type: "fs.write", Subject: "/srv/a b.md", Data: []byte(`{"k":"v"}`)}
	ev.Context.SetPID(42)
	ev.SetAttr("tenant", "acme")
	if err := e.m.PublishBatch(context.Background(), []*event.Event{ev}); err != nil {
		t.Fatal(err)
	}
	r.waitSent(t, "w", 1)
	h.mu.Lock()
	defer h.mu.Unlock()
	hd, body := h.headers[0], h.bodies[0]
	for k, want := range map[string]string{
		"ce-specversion": "1.0", "ce-type": "fs.write", "ce-id": ev.ID.String(), "ce-source": "semprop://test",
		"ce-subject": "/srv/a%20b.md", "ce-seq": "1", "ce-pid": "42", "ce-tenant": "acme",
		"Content-Type": "application/json", "Authorization": "Bearer x",
	} {
		if got := hd.Get(k); got != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
	if string(body) != `{"k":"v"}` {
		t.Errorf("body %q, want the data", body)
	}
	if sig := hd.Get("X-Semprop-Signature-256"); !hmac.Equal([]byte(sig), []byte(Sign([]byte("s3cret"), body))) || len(sig) != 71 {
		t.Errorf("signature %q does not verify", sig)
	}
	// The header parses back into the same event (binary mode round trip).
	back, err := event.ParseBinaryMode(hd, body)
	if err != nil {
		t.Fatal(err)
	}
	if back.Subject != ev.Subject || back.Type != ev.Type || string(back.Data) != string(ev.Data) {
		t.Errorf("binary mode round trip: %+v, want subject %q", back, ev.Subject)
	}
}

func TestWebhookRetriesHonourRetryAfter(t *testing.T) {
	for _, status := range []int{http.StatusServiceUnavailable, http.StatusTooManyRequests} {
		t.Run(strconv.Itoa(status), func(t *testing.T) {
			e := newEnv(t)
			h := &hookServer{fail: 2, status: status, retry: "1"}
			srv := httptest.NewServer(h)
			t.Cleanup(srv.Close)
			r := start(t, e, Options{Outputs: []Config{{Name: "w", Type: TypeWebhook, Retry: RetryConfig{Initial: time.Millisecond},
				Webhook: &WebhookConfig{URL: srv.URL, Mode: "batch"}}}})
			begin := time.Now()
			e.publish(t, "fs.write", 20, 2)
			info := r.waitSent(t, "w", 20)
			if el := time.Since(begin); el < 2*time.Second {
				t.Errorf("delivered after %v: Retry-After 1s twice not honoured", el)
			}
			if info.Retries != 2 || len(h.got()) != 20 {
				t.Errorf("retries %d, received %d; want 2 and 20", info.Retries, len(h.got()))
			}
		})
	}
}

func TestWebhookClientErrorDeadLetters(t *testing.T) {
	e := newEnv(t)
	h := &hookServer{reject: "/srv/f1.md"}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	r := start(t, e, Options{Outputs: []Config{{Name: "w", Type: TypeWebhook, Webhook: &WebhookConfig{URL: srv.URL}}}})
	e.publish(t, "fs.write", 3, 3)
	info := r.waitSent(t, "w", 3)
	if info.DeadLettered != 1 || info.Sent != 2 {
		t.Errorf("dead-lettered %d sent %d, want 1 and 2", info.DeadLettered, info.Sent)
	}
	if got := h.got(); len(got) != 2 || got[0].Seq != 1 || got[1].Seq != 3 {
		t.Errorf("received %v, want seqs 1 and 3", got)
	}
}

// restartable serves h on a fixed local address and can be stopped (the
// port refuses connections) and started again.
type restartable struct {
	t    *testing.T
	addr string
	h    http.Handler
	mu   sync.Mutex
	srv  *http.Server
}

func newRestartable(t *testing.T, h http.Handler) *restartable {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &restartable{t: t, addr: l.Addr().String(), h: h}
	r.serve(l)
	t.Cleanup(r.stop)
	return r
}

func (r *restartable) serve(l net.Listener) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.srv = &http.Server{Handler: r.h}
	go r.srv.Serve(l)
}

func (r *restartable) stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.srv != nil {
		r.srv.Close()
		r.srv = nil
	}
}

func (r *restartable) restart() {
	for range 100 {
		l, err := net.Listen("tcp", r.addr)
		if err == nil {
			r.serve(l)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.t.Errorf("cannot listen on %s again", r.addr)
}

func TestWebhookTargetDownAndForwarderKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns children")
	}
	for _, mode := range []string{"batch", "binary"} {
		t.Run(mode, func(t *testing.T) {
			h := &hookServer{}
			rs := newRestartable(t, h)
			n := 3000
			if mode == "binary" {
				n = 900
			}
			// Stop the target for a while once it got half the events.
			stopped := make(chan struct{})
			go func() {
				defer close(stopped)
				for len(h.got()) < n/2 {
					time.Sleep(time.Millisecond)
				}
				rs.stop()
				time.Sleep(300 * time.Millisecond)
				rs.restart()
			}()
			cursors := killTest(t, Config{Name: "hook", Type: TypeWebhook, BatchSize: 50,
				Retry:   RetryConfig{Initial: 10 * time.Millisecond, Max: 100 * time.Millisecond},
				Webhook: &WebhookConfig{URL: "http://" + rs.addr + "/", Mode: mode}}, n, 7, func() int { return len(h.got()) })
			<-stopped
			checkDelivery(t, h.got(), n, cursors, false)
		})
	}
}
