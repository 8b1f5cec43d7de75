package enrich

import (
	"context"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/semprop/semprop/event"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// recorder is a BatchPublisher that keeps what it is given.
type recorder struct {
	mu   sync.Mutex
	evs  []*event.Event
	fail int // the next fail calls fail
}

func (r *recorder) PublishBatch(_ context.Context, evs []*event.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail > 0 {
		r.fail--
		return errTest
	}
	r.evs = append(r.evs, evs...)
	return nil
}

// take returns and forgets what was published.
func (r *recorder) take() []*event.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	evs := r.evs
	r.evs = nil
	return evs
}

// waitFor waits until an event matches f and returns it.
func (r *recorder) waitFor(t *testing.T, d time.Duration, f func(*event.Event) bool) *event.Event {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		r.mu.Lock()
		for _, ev := range r.evs {
			if f(ev) {
				r.mu.Unlock()
				return ev
			}
		}
		r.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no matching event within %v", d)
	return nil
}

type testError struct{}

func (testError) Error() string { return "test: refused" }

var errTest error = testError{}

func newTestPublisher(t *testing.T, opts Options) *Publisher {
	t.Helper()
	p, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(context.Background()); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return p
}

func publish(t *testing.T, p *Publisher, evs ...*event.Event) {
	t.Helper()
	if err := p.PublishBatch(context.Background(), evs); err != nil {
		t.Fatalf("PublishBatch: %v", err)
	}
}

func attr(ev *event.Event, k string) string {
	v, _ := ev.Attr(k)
	return v
}
