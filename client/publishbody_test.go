package client_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/semprop/semprop/client"
	"github.com/semprop/semprop/event"
)

// lateTransport answers every publish at once and reads the request body
// only afterwards (as a RoundTripper may: it closes the body after
// RoundTrip returns), through the body and through a GetBody copy.
type lateTransport struct {
	wg      sync.WaitGroup
	release chan struct{} // closed: the late readers may read
	mu      sync.Mutex
	bodies  []string // every body read, from Body and from GetBody
}

func (lt *lateTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	const answer = `{"seqs":[1]}`
	lt.wg.Go(func() {
		<-lt.release
		read := func(rc io.ReadCloser) {
			b, _ := io.ReadAll(rc)
			rc.Close()
			lt.mu.Lock()
			lt.bodies = append(lt.bodies, string(b))
			lt.mu.Unlock()
		}
		again, err := req.GetBody()
		read(req.Body)
		if err == nil {
			read(again)
		}
	})
	return &http.Response{
		StatusCode: 200, Header: http.Header{"Content-Type": {"application/json"}},
		Body: io.NopCloser(strings.NewReader(answer)), ContentLength: int64(len(answer)), Request: req,
	}, nil
}

// TestPublishBodyOutlivesTheCall: the pooled buffer a publish encodes into
// is reused only once the transport closed every reader of it: bodies read
// after the publishes returned, while later publishes encoded theirs, are
// still each publish's own.
func TestPublishBodyOutlivesTheCall(t *testing.T) {
	lt := &lateTransport{release: make(chan struct{})}
	c := client.NewWithHTTPClient("http://semprop.invalid", "", &http.Client{Transport: lt})
	const publishes, batch = 40, 20
	ctx := context.Background()
	var wg sync.WaitGroup
	for p := range publishes {
		wg.Go(func() {
			evs := make([]*event.Event, batch)
			for i := range evs {
				evs[i] = &event.Event{Type: "t.x", Source: "s", SourceID: fmt.Sprint(i), Subject: fmt.Sprintf("/p%d/e%d", p, i)}
			}
			if p%2 == 0 {
				if _, err := c.PublishBatch(ctx, evs); err != nil {
					t.Error(err)
				}
				return
			}
			if _, err := c.Publish(ctx, evs[0]); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	close(lt.release)
	lt.wg.Wait()
	if len(lt.bodies) != 2*publishes {
		t.Fatalf("read %d bodies, want %d", len(lt.bodies), 2*publishes)
	}
	for _, b := range lt.bodies {
		var evs []*event.Event
		if strings.HasPrefix(b, "[") {
			var err error
			if evs, err = event.ParseJSONBatch([]byte(b)); err != nil {
				t.Fatalf("body %q: %v", b, err)
			}
		} else {
			ev := new(event.Event)
			if err := ev.UnmarshalJSON([]byte(b)); err != nil {
				t.Fatalf("body %q: %v", b, err)
			}
			evs = []*event.Event{ev}
		}
		var p int
		if _, err := fmt.Sscanf(evs[0].Subject, "/p%d/", &p); err != nil {
			t.Fatalf("body %q: subject %q", b, evs[0].Subject)
		}
		want := batch
		if p%2 == 1 {
			want = 1
		}
		if len(evs) != want {
			t.Fatalf("body of publish %d holds %d events, want %d: %q", p, len(evs), want, b)
		}
		for i, ev := range evs {
			if ev.Subject != fmt.Sprintf("/p%d/e%d", p, i) {
				t.Fatalf("body of publish %d, event %d: subject %q (another publish's bytes)", p, i, ev.Subject)
			}
		}
	}
}
