package journal

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestNotifyWakesEveryWaiter: notify skips its lock when nobody listens
// (listening); a WaitDurable or a Changed watcher that starts listening
// while records become durable must still be woken. Writers and waiters
// race under every policy; each waiter waits for a seq that is already
// assigned, and must see it durable within the deadline.
func TestNotifyWakesEveryWaiter(t *testing.T) {
	for _, policy := range []FsyncPolicy{FsyncAlways, FsyncInterval, FsyncNever} {
		for _, changed := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/changed=%v", policy, changed), func(t *testing.T) {
				testNotifyWakes(t, policy, changed)
			})
		}
	}
}

// testNotifyWakes waits with WaitDurable, or with Changed if changed.
func testNotifyWakes(t *testing.T, policy FsyncPolicy, changed bool) {
	j := open(t, Options{Fsync: policy, FsyncInterval: time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const writers, writes, waiters = 2, 500, 4
	var wg sync.WaitGroup
	errs := make(chan error, writers+waiters)
	for range writers {
		wg.Go(func() {
			for range writes {
				if _, err := j.Write(1, enc100); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	for w := range waiters {
		if !changed {
			// WaitDurable on the last assigned seq, over and over.
			wg.Go(func() {
				for range writes / 5 {
					seq := j.LastSeq()
					if err := j.WaitDurable(ctx, seq); err != nil {
						errs <- fmt.Errorf("waiter %d: WaitDurable(%d): %w (durable %d)", w, seq, err, j.DurableSeq())
						return
					}
				}
			})
			continue
		}
		// Changed: take the channel, check, block.
		wg.Go(func() {
			for range writes / 5 {
				seq := j.LastSeq()
				for {
					ch := j.Changed()
					if j.DurableSeq() >= seq {
						break
					}
					select {
					case <-ch:
					case <-ctx.Done():
						errs <- fmt.Errorf("watcher %d: not woken for seq %d (durable %d)", w, seq, j.DurableSeq())
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
