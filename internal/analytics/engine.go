package analytics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zeebo/xxh3"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/auth"
)

// Errors returned by the engine.
var (
	ErrConfig  = errors.New("analytics: invalid configuration")
	ErrNoView  = errors.New("analytics: no aggregates for this token")
	ErrClosed  = errors.New("analytics: closed")
	ErrCorrupt = errors.New("analytics: corrupt store record")
)

// Config is the `analytics:` section of the configuration.
type Config struct {
	// DirDepth is how many path components make the "dir" key
	// (/srv/data at 2, the default).
	DirDepth int `yaml:"dir_depth"`
	// Lateness is how far behind the latest event time the watermark
	// runs (default 2s): a pane closes once the watermark passes its end;
	// an event older than that counts in the oldest open pane (and in
	// semprop_analytics_late_events_total).
	Lateness time.Duration `yaml:"lateness"`
	// IdleAdvance moves the watermark with the wall clock when no event
	// came for this long (default 2s), so that a quiet stream still closes
	// its panes.
	IdleAdvance time.Duration `yaml:"idle_advance"`
	// SessionGap ends a process's session window after this much event
	// time without its events (default 30s).
	SessionGap time.Duration `yaml:"session_gap"`
	// TopPaths is the capacity of each pane's space-saving summary of
	// paths (default 2048): every path above 1/TopPaths of a pane's events
	// is kept, each count within pane events/TopPaths.
	TopPaths int `yaml:"top_paths"`
	// MaxKeys bounds the keys of one dimension in one pane (default
	// 10000); further keys are counted under "(other)".
	MaxKeys int `yaml:"max_keys"`
	// Retention per resolution, counted back from the newest rollup
	// (defaults 1s: 2h, 1m: 14 days, 1h: 400 days).
	Retention Retention `yaml:"retention"`
	// Insights configures anomaly detection.
	Insights InsightConfig `yaml:"insights"`
}

// Retention is how long rollups of each resolution are kept.
type Retention struct {
	Second time.Duration `yaml:"1s"`
	Minute time.Duration `yaml:"1m"`
	Hour   time.Duration `yaml:"1h"`
}

// InsightConfig configures the anomaly detector.
type InsightConfig struct {
	// Disabled turns insights off.
	Disabled bool `yaml:"disabled"`
	// Threshold is the score from which a spike or drop is reported
	// (default 6: six standard deviations from the seasonal baseline).
	Threshold float64 `yaml:"threshold"`
	// MinCount is the smallest count in one minute that can be a spike, a
	// new writer or an unusual hour (default 50).
	MinCount int64 `yaml:"min_count"`
	// MaxAge: an insight about a minute that ended longer ago than this
	// (found while catching up on the journal) is kept but not published
	// (default 5m).
	MaxAge time.Duration `yaml:"max_age"`
}

// Defaults returns the configuration with every default filled in.
func (c Config) Defaults() Config {
	if c.DirDepth == 0 {
		c.DirDepth = 2
	}
	if c.Lateness == 0 {
		c.Lateness = 2 * time.Second
	}
	if c.IdleAdvance == 0 {
		c.IdleAdvance = 2 * time.Second
	}
	if c.SessionGap == 0 {
		c.SessionGap = 30 * time.Second
	}
	if c.TopPaths == 0 {
		c.TopPaths = 2048
	}
	if c.MaxKeys == 0 {
		c.MaxKeys = 10000
	}
	if c.Retention.Second == 0 {
		c.Retention.Second = 2 * time.Hour
	}
	if c.Retention.Minute == 0 {
		c.Retention.Minute = 14 * 24 * time.Hour
	}
	if c.Retention.Hour == 0 {
		c.Retention.Hour = 400 * 24 * time.Hour
	}
	if c.Insights.Threshold == 0 {
		c.Insights.Threshold = 6
	}
	if c.Insights.MinCount == 0 {
		c.Insights.MinCount = 50
	}
	if c.Insights.MaxAge == 0 {
		c.Insights.MaxAge = 5 * time.Minute
	}
	return c
}

// Validate checks the configuration (after Defaults).
func (c Config) Validate() error {
	c = c.Defaults()
	switch {
	case c.DirDepth < 1 || c.DirDepth > 16:
		return fmt.Errorf("%w: dir_depth %d: want 1 to 16", ErrConfig, c.DirDepth)
	case c.Lateness < 0 || c.Lateness > 10*time.Second:
		return fmt.Errorf("%w: lateness %s: want 0 to 10s", ErrConfig, c.Lateness)
	case c.IdleAdvance < 100*time.Millisecond:
		return fmt.Errorf("%w: idle_advance %s: want at least 100ms", ErrConfig, c.IdleAdvance)
	case c.SessionGap < time.Second:
		return fmt.Errorf("%w: session_gap %s: want at least 1s", ErrConfig, c.SessionGap)
	case c.TopPaths < 16 || c.TopPaths > 1<<20:
		return fmt.Errorf("%w: top_paths %d: want 16 to 1048576", ErrConfig, c.TopPaths)
	case c.MaxKeys < 16:
		return fmt.Errorf("%w: max_keys %d: want at least 16", ErrConfig, c.MaxKeys)
	case c.Retention.Second < time.Minute || c.Retention.Minute < time.Hour || c.Retention.Hour < 24*time.Hour:
		return fmt.Errorf("%w: retention: want at least 1s: 1m, 1m: 1h, 1h: 24h", ErrConfig)
	case c.Insights.Threshold < 1:
		return fmt.Errorf("%w: insights.threshold %g: want at least 1", ErrConfig, c.Insights.Threshold)
	case c.Insights.MinCount < 1:
		return fmt.Errorf("%w: insights.min_count %d: want at least 1", ErrConfig, c.Insights.MinCount)
	}
	return nil
}

// Source is the durable event stream: *propagate.Reader implements it.
type Source interface {
	Next(ctx context.Context, ev *event.Event) error
	TryNext(ev *event.Event) (bool, error)
	Close() error
}

// Publisher publishes insight events and returns once they are durable:
// *propagate.Manager implements it.
type Publisher interface {
	Publish(ctx context.Context, ev *event.Event) (uint64, error)
}

// Options configure an Engine.
type Options struct {
	// Dir holds the rollups (DATA/analytics); empty keeps no history.
	Dir string
	// Open opens the durable stream from a seq (manager.Reader). Required.
	Open func(from uint64) (Source, error)
	// FirstSeq returns the journal's first retained seq (where a rebuild
	// starts); nil means 1.
	FirstSeq func() uint64
	// Publisher publishes insights; nil publishes none (they are still
	// kept and served).
	Publisher Publisher
	// Source is the CloudEvents source of insight events.
	Source string
	// Principals are the tokens whose callers get aggregates of their own
	// (the events each may see, redacted for it). Without tokens pass none:
	// every caller then sees the engine's own aggregates.
	Principals []*auth.Principal
	// Now is the wall clock (tests); nil is time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// Engine computes the aggregates. Run feeds it; the query methods and the
// HTTP handlers may be called from any goroutine.
type Engine struct {
	cfg  Config
	opts Options
	log  *slog.Logger
	now  func() time.Time

	// mu guards the views, the watermark and the detector. Lock order: mu,
	// then insightMu.
	mu     sync.Mutex
	all    *view
	views  map[string]*view // by principal name
	order  []*view
	maxSec int64 // largest event second seen
	wm     int64 // watermark, Unix seconds
	// closedWM is the watermark the views last closed their panes at:
	// applying events moves wm, and closeLocked closes the panes up to
	// it after the batch of events (or before an event whose pane would
	// reuse one not yet closed).
	closedWM int64
	lastSeq  uint64
	lastTime int64  // event time (Unix ns) of the last event
	applied  uint64 // events applied (published to events by countersLocked)
	// nowSec is the wall clock (Unix seconds) read once per batch of
	// events applied.
	nowSec int64
	// lastApply is when Run last applied events (wall clock).
	lastApply time.Time
	// lastSize and lastBin memoize the size sketch's bin of the last
	// write size: writes come in runs of one size.
	lastSize int64
	lastBin  int
	stores   map[*view]*store
	det      *detector
	uids     uidKeys
	// keys turns the keys of binary records into strings (runRecords).
	keys *recordKeys

	insightMu  sync.Mutex
	insights   []Insight // newest last, bounded
	kindCounts map[string]uint64
	changed    chan struct{}

	pub chan Insight // to the publishing goroutine

	events    atomic.Uint64
	cursor    atomic.Uint64
	late      atomic.Uint64
	published atomic.Uint64
	dropped   atomic.Uint64
	storeErrs atomic.Uint64
	// applyHook, when set (tests, benchmarks), is called with each seq
	// once its aggregates are updated.
	applyHook func(seq uint64)
}

const maxInsights = 1000

// New returns an Engine; it reads nothing until Run.
func New(cfg Config, opts Options) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.Defaults()
	if opts.Open == nil {
		return nil, fmt.Errorf("%w: Options.Open is required", ErrConfig)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.FirstSeq == nil {
		opts.FirstSeq = func() uint64 { return 1 }
	}
	e := &Engine{cfg: cfg, opts: opts, log: opts.Logger, now: opts.Now, views: make(map[string]*view),
		stores: make(map[*view]*store), uids: make(uidKeys), maxSec: -1, wm: -1, closedWM: -1,
		changed: make(chan struct{}), pub: make(chan Insight, 256)}
	if !cfg.Insights.Disabled {
		e.det = newDetector(cfg.Insights)
	}
	e.all = newView("", nil, &e.cfg, e.det != nil, e.emit)
	e.order = append(e.order, e.all)
	for _, p := range opts.Principals {
		if p == nil || p == auth.Anonymous {
			continue
		}
		if _, dup := e.views[p.Name]; dup {
			return nil, fmt.Errorf("%w: principal %q twice", ErrConfig, p.Name)
		}
		v := newView(p.Name, p, &e.cfg, false, e.emit)
		e.views[p.Name] = v
		e.order = append(e.order, v)
	}
	if opts.Dir != "" {
		for _, v := range e.order {
			s, err := openStore(filepath.Join(opts.Dir, viewDir(v.name)), cfg.Retention)
			if err != nil {
				e.closeStores()
				return nil, err
			}
			e.stores[v] = s
		}
	}
	return e, nil
}

// viewDir is the directory of a view's store: "all" for the engine's
// own, "token-<hash>" for a token's (names may hold any character).
func viewDir(name string) string {
	if name == "" {
		return "all"
	}
	return fmt.Sprintf("token-%016x", xxh3.HashString(name))
}

func (e *Engine) closeStores() {
	for _, s := range e.stores {
		s.close()
	}
}

// resumeSeq is where reading starts: the earliest seq any view still needs
// (the oldest minute of its sliding hour, or everything for a view
// without history).
func (e *Engine) resumeSeq() uint64 {
	first := e.opts.FirstSeq()
	if len(e.stores) == 0 {
		return first
	}
	from := uint64(1<<64 - 1)
	for _, v := range e.order {
		r := e.stores[v].state.Resume
		from = min(from, max(r, first))
	}
	return from
}

// Run reads the durable stream and updates the aggregates until ctx is
// done; it returns ctx's error, or the stream's error. Call it once.
func (e *Engine) Run(ctx context.Context) error {
	defer e.closeStores()
	e.mu.Lock()
	from := e.resumeSeq()
	e.restoreLocked()
	e.mu.Unlock()
	src, err := e.opts.Open(from)
	if err != nil {
		return fmt.Errorf("analytics: open stream at %d: %w", from, err)
	}
	defer src.Close()
	e.log.Debug("analytics: reading", "from", from)
	var wg sync.WaitGroup
	pubCtx, stopPub := context.WithCancel(context.Background())
	wg.Go(func() { e.publishLoop(pubCtx) })
	// The helpers stop when Run returns, on a read error as well as when
	// ctx ends.
	idleCtx, stopIdle := context.WithCancel(ctx)
	defer func() {
		stopIdle()
		stopPub()
		wg.Wait()
	}()

	// The idle ticker moves the watermark with the wall clock when no
	// event came for IdleAdvance (the reader itself never times out: no
	// timer per read).
	wg.Go(func() {
		t := time.NewTicker(e.cfg.IdleAdvance / 2)
		defer t.Stop()
		for {
			select {
			case <-idleCtx.Done():
				return
			case <-t.C:
				e.idle()
			}
		}
	})
	if rs, ok := src.(RecordSource); ok && len(e.order) == 1 {
		// No token views (nothing to match or redact): read the records
		// themselves, decoding only what the aggregates use.
		return e.runRecords(ctx, rs)
	}
	var ev event.Event
	for {
		if err := e.applyNext(ctx, src, &ev); err != nil {
			if ctx.Err() != nil {
				e.checkpoint()
				return ctx.Err()
			}
			return err
		}
	}
}

// applyNext waits for the next durable event, applies it and what else
// is durable already (up to 256 events under one lock), and wakes the
// live streams. ev is scratch space.
func (e *Engine) applyNext(ctx context.Context, src Source, ev *event.Event) error {
	if err := src.Next(ctx, ev); err != nil {
		return fmt.Errorf("analytics: read: %w", err)
	}
	e.mu.Lock()
	e.nowSec = e.now().Unix()
	e.applyLocked(ev)
	// Drain what is already durable under one lock.
	for range 255 {
		ok, err := src.TryNext(ev)
		if err != nil {
			e.mu.Unlock()
			return fmt.Errorf("analytics: read: %w", err)
		}
		if !ok {
			break
		}
		e.applyLocked(ev)
	}
	e.endBatch()
	return nil
}

// endBatch closes the panes the batch's events passed, counts them and
// tells the watchers; it releases e.mu, which the batch held.
func (e *Engine) endBatch() {
	e.closeLocked()
	e.lastApply = e.now()
	e.countersLocked()
	e.mu.Unlock()
	e.notify()
}

// idle advances the watermark with the wall clock on a quiet stream.
func (e *Engine) idle() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.maxSec < 0 || e.now().Sub(e.lastApply) < e.cfg.IdleAdvance {
		return
	}
	now := e.now().Unix()
	// Only when the stream is near the wall clock: never past events that
	// may still come while catching up.
	if now-e.maxSec > 3600 {
		return
	}
	wm := now - int64(e.cfg.Lateness/time.Second) - 1
	if wm > e.wm {
		e.advanceLocked(wm)
		e.notify()
	}
}

// Apply updates the aggregates with one durable event: what Run does for
// each event read. It is exported for replays and benchmarks that feed
// the engine without a journal; never call it while Run runs.
func (e *Engine) Apply(ev *event.Event) {
	e.mu.Lock()
	e.nowSec = e.now().Unix()
	e.applyLocked(ev)
	e.closeLocked()
	e.countersLocked()
	e.mu.Unlock()
}

func (e *Engine) applyLocked(ev *event.Event) {
	var s sample
	e.beginLocked(&s, ev.Seq, ev.Time.Unix(), ev.Time.UnixNano())
	e.sampleOf(ev, &s)
	e.all.add(&s)
	for _, v := range e.order[1:] {
		if !v.p.Match(ev) {
			continue
		}
		rev := v.p.Redact(ev)
		if rev == ev {
			v.add(&s)
			continue
		}
		var rs sample
		rs.seq, rs.sec = s.seq, s.sec
		e.sampleOf(rev, &rs)
		v.add(&rs)
	}
	if e.applyHook != nil {
		e.applyHook(ev.Seq)
	}
}

// beginLocked moves the watermark and the engine's position for the
// event seq of event time sec (Unix seconds; ns in Unix ns), and sets the
// sample's seq and second (clamped to the watermark).
func (e *Engine) beginLocked(s *sample, seq uint64, sec, ns int64) {
	s.seq = seq
	s.sec = sec
	if s.sec > e.nowSec+60 {
		s.sec = e.nowSec // a clock far ahead must not close every pane
	}
	if s.sec > e.maxSec {
		e.maxSec = s.sec
		if wm := s.sec - int64(e.cfg.Lateness/time.Second); wm > e.wm {
			// The panes it passes are closed once the events made
			// durable with this one are applied (closeLocked): their
			// latency does not include the close.
			e.wm = wm
		}
	}
	if s.sec < e.wm {
		s.sec = e.wm
		e.late.Add(1)
	}
	if s.sec >= e.closedWM+secRing-2 {
		// The event's second pane may be the ring slot of a pane still
		// waiting to be closed: close first.
		e.closeLocked()
	}
	e.lastSeq = seq
	e.lastTime = ns
	e.applied++
}

// countersLocked publishes the event count and the cursor to the
// metrics: once per batch of events applied, not once per event (an
// atomic write costs more than the rest of the bookkeeping).
func (e *Engine) countersLocked() {
	e.events.Store(e.applied)
	e.cursor.Store(e.lastSeq)
}

// sampleOf fills the keys of ev into s.
func (e *Engine) sampleOf(ev *event.Event, s *sample) {
	s.typ = ev.Type
	s.path = ev.Subject
	s.dir, s.depth = "", e.cfg.DirDepth
	s.comm = ev.Context.Comm
	if s.comm == "" {
		s.comm = unknownKey
	}
	if ev.Context.Has(event.HasUID) {
		s.uid = e.uids.key(ev.Context.UID)
	} else {
		s.uid = unknownKey
	}
	s.bytes = 0
	s.write = false
	switch {
	case ev.Context.Has(event.HasBytes) && ev.Context.Bytes > 0:
		s.bytes = ev.Context.Bytes
		s.write = true
	case ev.Type == "fs.write" && ev.Context.Has(event.HasSize) && ev.Context.Size > 0:
		// The boundary did not count the bytes (the kernel boundary and
		// FUSE passthrough do not see the data): the file's size after
		// the write, which is what a whole-file write wrote.
		s.bytes = ev.Context.Size
		s.write = true
	}
	if s.path != "" {
		s.hash = xxh3.HashString(s.path)
	}
	e.sizeBinOf(s)
}

// sizeBinOf sets the size sketch's bin of a write's bytes.
func (e *Engine) sizeBinOf(s *sample) {
	if s.write {
		if s.bytes != e.lastSize {
			e.lastSize, e.lastBin = s.bytes, ddBin(float64(s.bytes))
		}
		s.bin = e.lastBin
	}
}

func (e *Engine) advanceLocked(wm int64) {
	e.wm = wm
	e.closeLocked()
}

// closeLocked closes the panes the watermark passed since the last call.
func (e *Engine) closeLocked() {
	if e.closedWM >= e.wm {
		return
	}
	for _, v := range e.order {
		v.advance(e.wm)
	}
	e.closedWM = e.wm
}

// emit receives the closed panes of every view.
func (e *Engine) emit(v *view, r *rollup) {
	if s := e.stores[v]; s != nil {
		if err := s.append(r, e.resumeOf(v)); err != nil {
			e.storeErrs.Add(1)
			e.log.Warn("analytics: store", "err", err)
		}
	}
	if v == e.all && r.res == res1m && e.det != nil {
		for _, in := range e.det.observe(r) {
			e.addInsight(in)
		}
	}
}

// resumeOf is the first seq of the oldest minute pane of v still in its
// sliding hour, or of an open second not yet in its minute: where a
// restart must read from to rebuild them.
func (e *Engine) resumeOf(v *view) uint64 {
	var r uint64
	for _, p := range v.min {
		if p.count > 0 && p.start > v.maxSec-maxWindow-60 && (r == 0 || p.firstSeq < r) {
			r = p.firstSeq
		}
	}
	for _, p := range v.openSeconds() {
		if r == 0 || p.firstSeq < r {
			r = p.firstSeq
		}
	}
	if r == 0 {
		return e.lastSeq + 1
	}
	return r
}

func (e *Engine) addInsight(in Insight) {
	e.insightMu.Lock()
	if len(e.insights) == maxInsights {
		copy(e.insights, e.insights[1:])
		e.insights = e.insights[:maxInsights-1]
	}
	e.insights = append(e.insights, in)
	if e.kindCounts == nil {
		e.kindCounts = make(map[string]uint64)
	}
	e.kindCounts[in.Kind]++
	e.insightMu.Unlock()
	if e.opts.Publisher == nil || e.now().Sub(in.Time.Add(time.Minute)) > e.cfg.Insights.MaxAge {
		return
	}
	select {
	case e.pub <- in:
	default:
		e.dropped.Add(1)
	}
}

func (e *Engine) publishLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case in := <-e.pub:
			ev := insightEvent(in, e.opts.Source)
			if _, err := e.opts.Publisher.Publish(ctx, ev); err != nil {
				if ctx.Err() != nil {
					return
				}
				e.dropped.Add(1)
				e.log.Warn("analytics: publish insight", "kind", in.Kind, "err", err)
				continue
			}
			e.published.Add(1)
		}
	}
}

// notify wakes the live streams.
func (e *Engine) notify() {
	e.insightMu.Lock()
	close(e.changed)
	e.changed = make(chan struct{})
	e.insightMu.Unlock()
}

// changedCh is closed at the next change of the aggregates.
func (e *Engine) changedCh() <-chan struct{} {
	e.insightMu.Lock()
	defer e.insightMu.Unlock()
	return e.changed
}

// checkpoint persists each store's state (Run does on stop).
func (e *Engine) checkpoint() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for v, s := range e.stores {
		if err := s.saveState(e.resumeOf(v)); err != nil {
			e.log.Warn("analytics: checkpoint", "err", err)
		}
	}
}

// restoreLocked warms the detector's baselines from the stored minute
// history of the engine's own view. The open panes and the open hour need
// nothing: the engine reads the journal again from the oldest minute of
// its sliding hour, which rebuilds them (rollups already stored are not
// written again).
func (e *Engine) restoreLocked() {
	if s := e.stores[e.all]; s != nil && e.det != nil && s.state.Persisted[res1m] > 0 {
		hw := s.state.Persisted[res1m]
		rs, err := s.read(res1m, hw-int64(e.cfg.Retention.Minute/time.Second), hw+60)
		if err != nil {
			e.log.Warn("analytics: restore baselines", "err", err)
			return
		}
		for _, r := range rs {
			e.det.observe(r) // warm only: these minutes were reported before
		}
	}
}

// view returns the aggregates the caller p may see.
func (e *Engine) viewFor(p *auth.Principal) (*view, error) {
	if p == nil || p == auth.Anonymous || len(e.views) == 0 {
		return e.all, nil
	}
	v, ok := e.views[p.Name]
	if !ok {
		return nil, fmt.Errorf("%w %q (tokens added since the daemon started get analytics at the next start)", ErrNoView, p.Name)
	}
	return v, nil
}

// Top returns the k busiest keys of by ("path", "comm", "uid", "dir" or
// "type") over the sliding window w, as p may see them.
func (e *Engine) Top(p *auth.Principal, by string, w time.Duration, k int) (TopResponse, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	v, err := e.viewFor(p)
	if err != nil {
		return TopResponse{}, err
	}
	sec := int64(w / time.Second)
	resp := TopResponse{By: by, Window: w.String(), Items: []TopItem{}}
	resp.Total, resp.TotalBytes = v.windowTotals(sec)
	var kcs []keyCount
	if by == "path" {
		kcs = v.topPaths(sec, k)
		resp.Approximate = true
	} else {
		d, ok := parseDim(by)
		if !ok {
			return TopResponse{}, fmt.Errorf("%w: by %q", errParam, by)
		}
		kcs = v.topDim(d, sec, k)
	}
	for _, kc := range kcs {
		resp.Items = append(resp.Items, TopItem{Key: kc.key, Count: kc.count, Bytes: kc.bytes, Error: kc.err})
	}
	return resp, nil
}

// WindowSummary returns the distinct paths and write-size quantiles of
// the sliding window w, as p may see them.
func (e *Engine) WindowSummary(p *auth.Principal, w time.Duration) (Summary, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	v, err := e.viewFor(p)
	if err != nil {
		return Summary{}, err
	}
	return v.summary(int64(w / time.Second)), nil
}

// Sessions returns the recent and open session windows per process, as
// p may see them.
func (e *Engine) Sessions(p *auth.Principal) ([]Session, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	v, err := e.viewFor(p)
	if err != nil {
		return nil, err
	}
	return v.sessionsOf(), nil
}

// Insights returns the insights since t that p may see, newest first, at
// most limit.
func (e *Engine) Insights(p *auth.Principal, since time.Time, limit int) []Insight {
	e.insightMu.Lock()
	defer e.insightMu.Unlock()
	out := []Insight{}
	for i := len(e.insights) - 1; i >= 0 && len(out) < limit; i-- {
		in := e.insights[i]
		if in.Time.Before(since) {
			break
		}
		if p != nil && !p.Match(insightEvent(in, e.opts.Source)) {
			continue
		}
		out = append(out, in)
	}
	return out
}

// Seq returns the last seq the aggregates include.
func (e *Engine) Seq() uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.lastSeq
}

// insightEvent is the event an insight is published as.
func insightEvent(in Insight, source string) *event.Event {
	ev := &event.Event{Type: "semprop.insight." + in.Kind, Source: source, DataContentType: "application/json"}
	if strings.HasPrefix(in.Key, "/") {
		ev.Subject = in.Key
	} else if _, dir, ok := strings.Cut(in.Key, "@"); ok && strings.HasPrefix(dir, "/") {
		ev.Subject = dir
	}
	ev.Data = insightJSON(in)
	return ev
}

// errParam marks a bad request parameter.
var errParam = errors.New("analytics: bad parameter")
