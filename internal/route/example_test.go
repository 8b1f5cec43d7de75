package route_test

import (
	"fmt"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/route"
)

// subscription stands for whatever the caller delivers to: here a slice,
// in semprop a live subscription with a bounded queue.
type subscription struct {
	name string
	got  []string
}

// deliver is built once; Router.Route calls it for each target and does
// not allocate.
func deliver(s *subscription, ev *event.Event) error {
	s.got = append(s.got, ev.Subject)
	return nil
}

func ExampleRouter() {
	r := route.New[*subscription](route.Options[*subscription]{})
	docs := &subscription{name: "docs"}
	all := &subscription{name: "all"}
	// A subscription is a route with one target; it is added when the
	// subscriber connects and removed by name when it leaves.
	if err := r.Add(
		route.Route[*subscription]{Name: "sub-1", Selector: route.Selector{Type: "fs.>", Path: "/data/**/*.md", Filter: "size > 0"}, Targets: []*subscription{docs}},
		route.Route[*subscription]{Name: "sub-2", Selector: route.Selector{Type: ">"}, Targets: []*subscription{all}},
	); err != nil {
		fmt.Println(err)
		return
	}
	for _, s := range []string{"/data/notes/a.md", "/data/b.txt"} {
		ev := &event.Event{Type: event.TypeWrite, Subject: s}
		ev.Context.SetSize(42)
		n := r.Route(ev, deliver)
		fmt.Println(s, "->", n, "targets")
	}
	r.Remove("sub-1")
	fmt.Println(docs.got, all.got, r.Table().Len())
	// Output:
	// /data/notes/a.md -> 2 targets
	// /data/b.txt -> 1 targets
	// [/data/notes/a.md] [/data/notes/a.md /data/b.txt] 1
}
