package cluster

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/semprop/semprop/event"
)

// TestCloseStopsEverything: a cluster that published, probed and was
// closed leaves no goroutine behind.
func TestCloseStopsEverything(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	c := newCluster(t, 3, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range 3 {
		if _, err := c.node(i).m.Publish(ctx, &event.Event{Type: "test.leak"}); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(300 * time.Millisecond) // let probes run
	c.stopAll()
	time.Sleep(200 * time.Millisecond)
}
