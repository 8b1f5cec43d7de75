package route

import (
	"fmt"
	"hash/maphash"
	"math/bits"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/sony/gobreaker/v2"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/filter"
)

// DeliverFunc hands ev to target. It must not block: a target that cannot
// take the event now returns an error, which counts as a failure for the
// target's circuit breaker and sends the event to the next member of a
// group. ev may be a redacted copy; it must not be modified.
type DeliverFunc[T comparable] func(target T, ev *event.Event) error

// Route is one routing rule.
type Route[T comparable] struct {
	// Name identifies the route; routes are replaced and removed by
	// name, which is unique.
	Name string
	// Selector chooses the events: type pattern, path glob, filter
	// expression.
	Selector Selector
	// Filter is an optional further filter (e.g. filter.Compile of a
	// config spec, or filter.Deny); an event must pass it too.
	Filter filter.Filter
	// Redact, if set, hides fields: targets receive a redacted copy.
	Redact *filter.Redactor
	// Targets receive the events; at least one.
	Targets []T
	// Strategy chooses among Targets; the zero value is Broadcast.
	Strategy Strategy
	// Weights, for Weighted, gives each target's share (positive).
	Weights []int
	// Breakers puts a circuit breaker (Options.Breaker) on each target.
	Breakers bool
}

// RouteInfo describes a route, for the admin API.
type RouteInfo struct {
	Name     string   `json:"name"`
	Selector Selector `json:"selector"`
	Filter   string   `json:"filter,omitempty"`
	Strategy string   `json:"strategy"`
	Targets  int      `json:"targets"`
	// Members names the targets (Options.TargetName), when the router
	// has a way to name them.
	Members []string `json:"members,omitempty"`
	// Kind says what made the route, for callers that know (the
	// propagation manager: "subscription", "group" or "route").
	Kind string `json:"kind,omitempty"`
}

// Options configure a Router.
type Options[T comparable] struct {
	// CacheSize bounds the type → routes cache (default 4096 types).
	CacheSize int
	// Breaker configures the per-target circuit breakers.
	Breaker BreakerSettings
	// OnBreakerChange, if set, is called when a target's breaker changes
	// state (closed, open, half-open), from the delivering goroutine.
	OnBreakerChange func(target T, from, to gobreaker.State)
	// TargetName, if set, names a target in Routes (RouteInfo.Members).
	TargetName func(target T) string
}

// Stats are a Router's counters since it was made.
type Stats struct {
	Version     uint64 // version of the current table
	Routes      int    // routes in the current table
	CacheHits   uint64 // type lookups answered by the cache
	CacheMisses uint64 // type lookups that walked the trie
	Delivered   uint64 // successful deliveries
	Failed      uint64 // deliveries that returned an error
	Skipped     uint64 // deliveries not attempted because the target's breaker was open
	Failovers   uint64 // events delivered to another member after a failure
	Undelivered uint64 // group events no member could take
}

type counters struct {
	hits, misses, delivered, failed, skipped, failovers, undelivered atomic.Uint64
}

// Router holds the routes and publishes them as immutable Tables. Route,
// Table and Stats are safe for concurrent use and never block; the
// reconfiguration methods serialise among themselves.
//
// Adding or removing a route costs about the same with ten routes or a
// hundred thousand (one subscription is one route): the routes live in an
// append-only array shared by every table, their type tries form levels of
// doubling size that are merged like a binary counter (amortised
// O(log n) insertions per route), and a removed route is marked dead from
// the next table's version on, so that older tables still see it, until
// dead routes outnumber live ones and the array is compacted.
type Router[T comparable] struct {
	opts  Options[T]
	stats counters
	table atomic.Pointer[Table[T]]

	mu          sync.Mutex     // guards the fields below; held while building a table
	all         []*compiled[T] // every route since the last compaction, in insertion order; dead ones included
	levels      []*level       // tries over all, oldest (largest) first
	byName      map[string]*compiled[T]
	dead        int // dead routes in all
	breakers    map[T]*gobreaker.CircuitBreaker[struct{}]
	breakerRefs map[T]int // live routes holding each breaker
	version     uint64
}

// level is one immutable trie over some positions of Router.all.
type level struct {
	root *node
	pos  []int32 // the positions it indexes, increasing
}

func newLevel[T comparable](all []*compiled[T], pos []int32) *level {
	l := &level{root: &node{}, pos: pos}
	for _, p := range pos {
		l.root.insert(all[p].sel.typ.toks, p)
	}
	return l
}

// New returns a Router with no routes.
func New[T comparable](opts Options[T]) *Router[T] {
	if opts.CacheSize <= 0 {
		opts.CacheSize = 4096
	}
	r := &Router[T]{opts: opts, byName: make(map[string]*compiled[T]),
		breakers: make(map[T]*gobreaker.CircuitBreaker[struct{}]), breakerRefs: make(map[T]int)}
	r.mu.Lock()
	r.publishLocked()
	r.mu.Unlock()
	return r
}

// Add adds dynamic routes, replacing dynamic routes of the same names, and
// publishes one new table. Either every route is valid or nothing changes.
func (r *Router[T]) Add(routes ...Route[T]) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	cs, err := r.compileLocked(routes)
	if err != nil {
		r.dropUnusedBreakersLocked()
		return err
	}
	for _, c := range cs { // before the replaced routes let go of shared breakers
		for j, b := range c.breakers {
			if b != nil {
				r.breakerRefs[c.targets[j]]++
			}
		}
	}
	next := r.version + 1
	for _, c := range cs {
		if old := r.byName[c.name]; old != nil {
			r.killLocked(old, next)
		}
		r.byName[c.name] = c
		c.pos = int32(len(r.all))
		r.all = append(r.all, c)
	}
	pos := make([]int32, len(cs))
	for i, c := range cs {
		pos[i] = c.pos
	}
	r.pushLevelLocked(pos)
	r.publishLocked()
	return nil
}

// Remove removes the dynamic routes with these names and publishes one new
// table. It returns how many it removed.
func (r *Router[T]) Remove(names ...string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, name := range names {
		if c := r.byName[name]; c != nil {
			r.killLocked(c, r.version+1)
			n++
		}
	}
	if n > 0 {
		r.publishLocked()
	}
	return n
}

// killLocked marks c dead from table version v on and lets go of its
// name and breakers.
func (r *Router[T]) killLocked(c *compiled[T], v uint64) {
	c.dead.Store(v)
	delete(r.byName, c.name)
	r.dead++
	for j, b := range c.breakers {
		if b == nil {
			continue
		}
		tgt := c.targets[j]
		if r.breakerRefs[tgt]--; r.breakerRefs[tgt] <= 0 {
			delete(r.breakerRefs, tgt)
			delete(r.breakers, tgt)
		}
	}
}

// dropUnusedBreakersLocked forgets the breakers made for routes that were
// not added after all.
func (r *Router[T]) dropUnusedBreakersLocked() {
	for tgt := range r.breakers {
		if r.breakerRefs[tgt] == 0 {
			delete(r.breakers, tgt)
		}
	}
}

// pushLevelLocked adds a level over pos and merges the newest levels while
// one is no larger than the one before it, skipping dead routes.
func (r *Router[T]) pushLevelLocked(pos []int32) {
	for len(r.levels) > 0 {
		last := r.levels[len(r.levels)-1]
		if len(last.pos) > 2*len(pos) {
			break
		}
		merged := make([]int32, 0, len(last.pos)+len(pos))
		for _, p := range last.pos {
			if r.all[p].dead.Load() == 0 {
				merged = append(merged, p)
			}
		}
		pos = append(merged, pos...)
		r.levels = r.levels[:len(r.levels)-1]
	}
	r.levels = append(r.levels, newLevel(r.all, pos))
}

// compactLocked rebuilds the routes without the dead ones, into a new
// array (older tables keep theirs), with one level.
func (r *Router[T]) compactLocked() {
	live := make([]*compiled[T], 0, len(r.all)-r.dead)
	for _, c := range r.all {
		if c.dead.Load() == 0 {
			live = append(live, c)
		}
	}
	// Positions are per array: the compiled routes are shared with older
	// tables only through those tables' own arrays and tries, which hold
	// positions of the old array. A route's pos field is read only under
	// r.mu, so renumbering it here is safe.
	pos := make([]int32, len(live))
	for i, c := range live {
		c.pos = int32(i)
		pos[i] = int32(i)
	}
	r.all, r.dead = live, 0
	r.levels = []*level{newLevel(r.all, pos)}
}

// Table returns the current table. A caller that routes several events
// with one table sees one consistent configuration.
func (r *Router[T]) Table() *Table[T] { return r.table.Load() }

// Route routes ev through the current table; see Table.Route.
func (r *Router[T]) Route(ev *event.Event, deliver DeliverFunc[T]) int {
	return r.table.Load().Route(ev, deliver)
}

// Routes describes the current routes, in the order they were added.
func (r *Router[T]) Routes() []RouteInfo {
	t := r.table.Load()
	out := make([]RouteInfo, 0, t.live)
	for _, c := range t.routes {
		if !t.alive(c) {
			continue
		}
		out = append(out, RouteInfo{})
		i := len(out) - 1
		out[i] = RouteInfo{Name: c.name, Selector: c.sel.Selector(), Strategy: c.strategy.String(),
			Targets: len(c.targets)}
		if r.opts.TargetName != nil {
			out[i].Members = make([]string, len(c.targets))
			for k, tgt := range c.targets {
				out[i].Members[k] = r.opts.TargetName(tgt)
			}
		}
		if c.extra != nil {
			out[i].Filter = fmt.Sprint(c.extra)
		}
	}
	return out
}

// Stats returns the router's counters.
func (r *Router[T]) Stats() Stats {
	t := r.table.Load()
	return Stats{
		Version: t.version, Routes: t.live,
		CacheHits: r.stats.hits.Load(), CacheMisses: r.stats.misses.Load(),
		Delivered: r.stats.delivered.Load(), Failed: r.stats.failed.Load(), Skipped: r.stats.skipped.Load(),
		Failovers: r.stats.failovers.Load(), Undelivered: r.stats.undelivered.Load(),
	}
}

// compileLocked validates and compiles routes, whose names must be
// distinct.
func (r *Router[T]) compileLocked(routes []Route[T]) ([]*compiled[T], error) {
	seen := make(map[string]bool)
	out := make([]*compiled[T], 0, len(routes))
	for i, rt := range routes {
		if rt.Name == "" {
			return nil, fmt.Errorf("route %d: empty name: %w", i, ErrBadRoute)
		}
		if seen[rt.Name] {
			return nil, fmt.Errorf("route %q: %w", rt.Name, ErrConflict)
		}
		seen[rt.Name] = true
		c, err := r.compileRouteLocked(rt)
		if err != nil {
			return nil, fmt.Errorf("route %q: %w", rt.Name, err)
		}
		out = append(out, c)
	}
	return out, nil
}

// publishLocked publishes a table of the current routes.
func (r *Router[T]) publishLocked() {
	if r.dead > 64 && r.dead > len(r.all)-r.dead {
		r.compactLocked()
	}
	r.version++
	t := &Table[T]{version: r.version, routes: r.all[:len(r.all):len(r.all)], levels: slices.Clone(r.levels),
		live: len(r.all) - r.dead, stats: &r.stats}
	sets := 1 << bits.Len(uint((r.opts.CacheSize+cacheWays-1)/cacheWays-1))
	t.cache = make([]atomic.Pointer[cacheEntry[T]], sets*cacheWays)
	t.mask = uint64(sets - 1)
	r.table.Store(t)
}

// Table is an immutable routing configuration: the routes, their trie and
// a cache of trie results. It is safe for concurrent use.
type Table[T comparable] struct {
	version uint64
	routes  []*compiled[T] // by position; some dead (see alive)
	levels  []*level
	live    int
	cache   []atomic.Pointer[cacheEntry[T]]
	mask    uint64
	stats   *counters
}

// alive reports whether c is a route of this table: not removed, or
// removed by a later table.
func (t *Table[T]) alive(c *compiled[T]) bool {
	d := c.dead.Load()
	return d == 0 || d > t.version
}

const cacheWays = 4

// cacheEntry holds the routes whose type pattern matches typ: those whose
// path glob has a literal directory (glob.Pattern.Dir) indexed by it when
// there are many, and the others in a list to scan.
type cacheEntry[T comparable] struct {
	typ   string
	scan  []*compiled[T]
	byDir map[string][]*compiled[T]
}

// indexThreshold is how many routes of one type with a literal directory
// make an index worthwhile.
const indexThreshold = 8

func newCacheEntry[T comparable](typ string, routes []*compiled[T]) *cacheEntry[T] {
	e := &cacheEntry[T]{typ: typ}
	n := 0
	for _, c := range routes {
		if c.dir != "" {
			n++
		}
	}
	if n < indexThreshold {
		e.scan = routes
		return e
	}
	e.byDir = make(map[string][]*compiled[T])
	for _, c := range routes {
		if c.dir == "" {
			e.scan = append(e.scan, c)
		} else {
			e.byDir[c.dir] = append(e.byDir[c.dir], c)
		}
	}
	return e
}

// each calls fn for every route of the entry that may match subject: the
// scan list, then the indexed routes of each ancestor directory of subject
// (shallowest first) and of subject itself. It stops when fn returns false.
func (e *cacheEntry[T]) each(subject string, fn func(c *compiled[T])) {
	for _, c := range e.scan {
		fn(c)
	}
	if e.byDir == nil {
		return
	}
	for i := 1; i < len(subject); i++ {
		if subject[i] == '/' {
			for _, c := range e.byDir[subject[:i]] {
				fn(c)
			}
		}
	}
	for _, c := range e.byDir[subject] {
		fn(c)
	}
}

var typeSeed = maphash.MakeSeed()

// Version increases by one with every published table.
func (t *Table[T]) Version() uint64 { return t.version }

// Len returns the number of routes.
func (t *Table[T]) Len() int { return t.live }

// Route calls deliver for each target that should receive ev: for every
// matching route, all targets of a Broadcast route, or one member of a
// group. Routes are visited in the order they were added, except that when a type has
// many routes with path globs under literal directories, those are looked
// up by the subject's directories and visited after the others,
// shallowest directory first. It returns the number of successful deliveries. It does not
// allocate when ev's type is cached, its filters are native, and no route
// redacts.
func (t *Table[T]) Route(ev *event.Event, deliver DeliverFunc[T]) int {
	return routeTable(t, ev, deliver, callDeliver[T])
}

// callDeliver adapts a DeliverFunc to RouteArg's form.
func callDeliver[T comparable](tgt T, ev *event.Event, d DeliverFunc[T]) error { return d(tgt, ev) }

// RouteArg is Table.Route with an argument passed through to deliver, for
// callers that need per-event state in deliver (a timestamp, a batch)
// without building a closure, which would allocate, for every event.
func RouteArg[T comparable, A any](t *Table[T], ev *event.Event, arg A, deliver func(target T, ev *event.Event, arg A) error) int {
	return routeTable(t, ev, arg, deliver)
}

// RouteBatchArg is RouteArg for several events, routed in order: the
// routes of a type are looked up once for a run of events of that type.
// It returns the number of successful deliveries. Like RouteArg it does
// not allocate.
func RouteBatchArg[T comparable, A any](t *Table[T], evs []*event.Event, arg A, deliver func(target T, ev *event.Event, arg A) error) int {
	var (
		e   *cacheEntry[T]
		typ string
		n   int
	)
	for _, ev := range evs {
		if e == nil || ev.Type != typ {
			e, typ = t.candidates(ev.Type), ev.Type
		}
		n += routeEntry(t, e, ev, arg, deliver)
	}
	t.countDelivered(n)
	return n
}

// countDelivered adds n successful deliveries to the router's counters,
// once per call rather than once per delivery.
func (t *Table[T]) countDelivered(n int) {
	if n > 0 {
		t.stats.delivered.Add(uint64(n))
	}
}

func routeTable[T comparable, A any](t *Table[T], ev *event.Event, arg A, fn func(T, *event.Event, A) error) int {
	n := routeEntry(t, t.candidates(ev.Type), ev, arg, fn)
	t.countDelivered(n)
	return n
}

// routeEntry routes ev through the routes of e, its type's entry.
func routeEntry[T comparable, A any](t *Table[T], e *cacheEntry[T], ev *event.Event, arg A, fn func(T, *event.Event, A) error) int {
	n := 0
	for _, c := range e.scan {
		n += routeOne(t, c, ev, arg, fn)
	}
	if e.byDir != nil {
		s := ev.Subject
		for i := 1; i < len(s); i++ {
			if s[i] == '/' {
				for _, c := range e.byDir[s[:i]] {
					n += routeOne(t, c, ev, arg, fn)
				}
			}
		}
		for _, c := range e.byDir[s] {
			n += routeOne(t, c, ev, arg, fn)
		}
	}
	return n
}

func routeOne[T comparable, A any](t *Table[T], c *compiled[T], ev *event.Event, arg A, fn func(T, *event.Event, A) error) int {
	if !c.sel.matchRest(ev) || (c.extra != nil && !c.extra.Match(ev)) {
		return 0
	}
	out := ev
	if c.redact != nil {
		out = c.redact.Apply(ev)
	}
	return deliverTo(c, out, arg, fn, t.stats)
}

// RouteVia delivers ev through the route named name only, by that
// route's strategy, without checking its selector and filters again and
// without redacting: for an event the route already selected and
// redacted, such as one a departed group member never took. It returns the
// number of successful deliveries: 0 when no route has that name or no
// target took the event (counted as undelivered). Like RouteArg it does
// not allocate.
func RouteVia[T comparable, A any](t *Table[T], name string, ev *event.Event, arg A, deliver func(target T, ev *event.Event, arg A) error) int {
	for _, c := range t.routes {
		if c.name == name && t.alive(c) {
			n := deliverTo(c, ev, arg, deliver, t.stats)
			t.countDelivered(n)
			return n
		}
	}
	return 0
}

// Match calls fn with the name of each route whose selector and filters
// pass ev, in routing order, without delivering.
func (t *Table[T]) Match(ev *event.Event, fn func(name string)) {
	t.candidates(ev.Type).each(ev.Subject, func(c *compiled[T]) {
		if c.sel.matchRest(ev) && (c.extra == nil || c.extra.Match(ev)) {
			fn(c.name)
		}
	})
}

// candidates returns the routes whose type pattern matches typ.
func (t *Table[T]) candidates(typ string) *cacheEntry[T] {
	h := maphash.String(typeSeed, typ)
	set := t.cache[(h&t.mask)*cacheWays:][:cacheWays]
	for i := range set {
		if e := set[i].Load(); e != nil && e.typ == typ {
			t.stats.hits.Add(1)
			return e
		}
	}
	misses := t.stats.misses.Add(1)
	var routes []*compiled[T]
	if validTokens(typ) {
		var buf [16]int32
		idx := buf[:0]
		for _, l := range t.levels {
			idx = l.root.collect(typ, idx)
		}
		slices.Sort(idx)
		routes = make([]*compiled[T], 0, len(idx))
		for _, x := range idx {
			if c := t.routes[x]; t.alive(c) {
				routes = append(routes, c)
			}
		}
	}
	e := newCacheEntry(typ, routes)
	for i := range set {
		if set[i].Load() == nil {
			set[i].Store(e)
			return e
		}
	}
	set[(misses>>1)%cacheWays].Store(e)
	return e
}
