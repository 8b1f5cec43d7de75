package propagate

import "github.com/semprop/semprop/event"

// Matcher selects the events a subscription or consumer receives, beyond
// its selector. Implementations must be safe for concurrent use and should
// not allocate: Match runs on the delivery path.
// route.CompiledSelector and auth.Principal are Matchers.
type Matcher interface {
	Match(ev *event.Event) bool
}

// MatchAll matches every event.
var MatchAll Matcher = matchAll{}

type matchAll struct{}

func (matchAll) Match(*event.Event) bool { return true }
