package propagate

import (
	"fmt"
	"testing"

	"github.com/semprop/semprop/internal/journal"
	"github.com/semprop/semprop/internal/route"
)

// BenchmarkSubscribeAt measures adding (and closing) one subscription
// while n others are open: the cost must not grow with n. Half of the
// open subscriptions share a type pattern, half have types of their own,
// as a fleet of clients would.
func BenchmarkSubscribeAt(b *testing.B) {
	for _, n := range []int{1_000, 10_000, 100_000} {
		b.Run(fmt.Sprintf("open=%d", n), func(b *testing.B) {
			e := newEnv(b, journal.FsyncNever)
			sel := func(i int) route.Selector {
				if i%2 == 0 {
					return route.Selector{Type: "fs.>", Path: fmt.Sprintf("/data/u%d/**", i)}
				}
				return route.Selector{Type: fmt.Sprintf("app.user%d.*", i)}
			}
			for i := range n {
				if _, err := e.m.Subscribe(SubscribeOptions{Selector: sel(i), Queue: 4}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				s, err := e.m.Subscribe(SubscribeOptions{Selector: sel(n + i), Queue: 4})
				if err != nil {
					b.Fatal(err)
				}
				s.Close()
			}
		})
	}
}
