package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/capture"
	"github.com/semprop/semprop/internal/metrics"
)

// Errors returned by New and Run.
var (
	ErrNoPublisher = errors.New("bridge: no publisher")
	ErrMountPair   = errors.New("bridge: backing and mount must be set together, as absolute paths")
	ErrRunning     = errors.New("bridge: already running")
)

// Publisher takes events in batches; the propagation manager implements it.
// PublishBatch blocks until the events are durable.
type Publisher interface {
	PublishBatch(ctx context.Context, evs []*event.Event) error
}

// Invalidator pushes changes into the FUSE kernel cache; the FUSE boundary
// implements it. Paths are relative to the backing root ("" is the root).
// Calls must not block: they queue and return at once.
type Invalidator interface {
	InvalidateContent(rel string)
	InvalidateEntry(relDir, name string)
	InvalidateDelete(relDir, name string)
}

// Options configure a Bridge.
type Options struct {
	Publisher Publisher
	// Source is the CloudEvents source prefix, e.g. "semprop://HOST";
	// events get Source+"/kernel" or Source+"/fuse". Default
	// "semprop://" + hostname.
	Source string
	// Backing and Mount are the backing root and mount point of a FUSE
	// mount (bridged mode); both empty for the kernel boundary alone.
	// Backing is resolved through symbolic links, like the kernel
	// boundary's root; Mount must be the mount point as the FUSE boundary
	// reports it (fusefs: FS.Mountpoint).
	Backing string
	Mount   string
	// Invalidator receives FUSE cache invalidations for changes made
	// directly on the backing tree; nil sends none (see SetInvalidator).
	Invalidator Invalidator
	// SelfPID is this process's pid: in bridged mode kernel ops with it
	// are shadows of FUSE ops. (The daemon's own direct changes to a
	// bridged backing tree look the same: see PublishOrphans.) Unused in
	// kernel-only mode, where the daemon's changes are published like any
	// other — keep its data directory out of a watched tree.
	SelfPID int32
	// Window is how long a FUSE op waits for its kernel shadow and the
	// other way round. Default 50ms. When shadows arrive after their FUSE
	// op was published alone (the kernel boundary lags, e.g. on a loaded
	// machine), the window grows to 1.5 times the lag seen, up to
	// MaxWindow (default 10 × Window), and shrinks back as pairs match in
	// time again.
	Window    time.Duration
	MaxWindow time.Duration
	// NoPassthrough says the mount never uses FUSE passthrough. By default
	// a bridged bridge holds kernel writes by other processes up to Window,
	// since with passthrough they may be the data half of a FUSE write;
	// with NoPassthrough they are published at once like other direct
	// changes.
	NoPassthrough bool
	// PublishOrphans publishes a shadow that has no FUSE op within the
	// window as a kernel-only event (with the daemon's pid). By default it
	// is counted and dropped: the daemon touches the backing tree only on
	// behalf of FUSE ops, which the FUSE boundary reports itself.
	PublishOrphans bool
	// DedupSize is the number of recent op hashes the repeat filter keeps;
	// 0 means 4096, negative disables it.
	DedupSize int
	// QueueSize bounds the ops waiting for the correlator; 0 means 8192.
	QueueSize int
	// MaxBatch bounds the events of one PublishBatch call; 0 means 1024.
	MaxBatch int
	// BatchDelay is how long the correlator naps after a round that had
	// ops before it takes the queue again. While it naps, Emit queues
	// without waking it: waking a parked goroutine from a FUSE handler
	// costs the handler a thread wake-up (an inter-processor interrupt on a
	// virtual machine) per operation, which a copy into the mount pays in
	// wall time. An idle correlator parks and is woken by the first op.
	// 0 means 2ms; negative: no nap (a wake-up per op).
	BatchDelay time.Duration
	// PublishDelay is how long the publisher naps after publishing a
	// batch before it takes the next one, so that a busy bridge publishes
	// (and, with fsync=always, makes the journal fsync) at most about every
	// PublishDelay instead of once per disk round trip. Events then wait
	// up to PublishDelay longer in memory — the bridge already holds them up
	// to Window for correlation — and never more than MaxBatch×4 of them
	// (the outbox bound). 0 means 20ms; negative: no nap.
	PublishDelay time.Duration
	// FlushTimeout bounds publishing what is held when Run's context ends;
	// 0 means 5s.
	FlushTimeout time.Duration
	// Logger receives publish failures; nil discards.
	Logger *slog.Logger

	noInvalidate bool             // tests: switch the reverse direction off
	now          func() time.Time // tests: injected clock
}

// Stats are the bridge's counters, read with Bridge.Stats.
type Stats struct {
	SeenKernel uint64 // ops from the kernel boundary
	SeenFUSE   uint64 // ops from the FUSE boundary

	Shadows           uint64 // kernel ops by the daemon itself (bridged)
	Merged            uint64 // shadows merged into their FUSE op's event
	Absorbed          uint64 // stray shadows explained by a recent FUSE op on the same file (side effects such as the chown after a create); not published
	Orphans           uint64 // shadows with no FUSE op within the window
	LateShadows       uint64 // shadows that came after their FUSE op was published alone (counted in Absorbed too); they widen the window
	StallWaits        uint64 // extra windows FUSE ops waited while the kernel boundary delivered nothing during a burst
	LateFUSE          uint64 // FUSE ops that came after their shadow's window and were paired with it (counted in Merged); they widen the window
	PassthroughMerged uint64 // kernel writes by the writer paired with a FUSE passthrough write
	Coalesced         uint64 // further FUSE ops of the same kind and file one kernel op was merged into (the kernel merges identical queued events)
	FUSEOnly          uint64 // FUSE ops published without a kernel partner
	KernelOnly        uint64 // kernel ops published alone (direct changes; kernel-only mode)
	DedupHits         uint64 // repeats dropped: the content-hash LRU, a writer's kernel write explained by a passthrough write already paired
	RescanCovered     uint64 // rescan reports (after an overflow) of paths a FUSE op published alone had changed: not published twice
	Invalidations     uint64 // FUSE invalidation calls

	Emitted       uint64 // events published
	Batches       uint64 // PublishBatch calls that succeeded
	PublishErrors uint64 // PublishBatch calls that failed
	Lost          uint64 // events given up after retries
	LossReports   uint64 // fs.overflow events published for events this bridge lost (reason "publish")
	Invalid       uint64 // ops that could not be translated into an event (reported as fs.overflow, reason "invalid")

	Pending   int           // ops waiting for their partner (a shadow, a FUSE op) now
	Window    time.Duration // the correlation window in effect now
	Queued    int           // ops waiting for the correlator now
	QueueFull uint64        // Emit calls that had to wait for room (backpressure)
	Closed    uint64        // ops emitted after Run returned, dropped
}

// DedupRate is the share of shadows that were folded into a logical event
// (merged or absorbed); 1 when there were none.
func (s Stats) DedupRate() float64 {
	if s.Shadows == 0 {
		return 1
	}
	return float64(s.Merged+s.Absorbed) / float64(s.Shadows)
}

type counters struct {
	seenKernel, seenFUSE                                          atomic.Uint64
	shadows, merged, absorbed, orphans, late                      atomic.Uint64
	passthroughMerged, fuseOnly, kernelOnly, coalesced            atomic.Uint64
	dedupHits, invalidations, rescanCovered, stallWaits, lateFUSE atomic.Uint64
	emitted, batches, publishErrors, lost                         atomic.Uint64
	lossReports, invalid                                          atomic.Uint64
	queueFull, closed                                             atomic.Uint64
	pending, window                                               atomic.Int64
	// orphans and absorbed go down when a late FUSE op pairs a shadow
	// after all; these count the same shadows but never go down (metrics).
	orphansSeen, absorbedSeen atomic.Uint64
	// delay is how long the correlator held each released event.
	delay metrics.Histogram
}

// Bridge correlates the kernel and FUSE views of file-system operations
// and publishes one event per logical operation. Emit on its sinks and
// Stats are safe for concurrent use; Run is called once.
//
// Backpressure: the sinks put ops on a bounded queue. When it is full, Emit
// waits for room (counted in Stats.QueueFull) rather than dropping: the
// kernel reader then stops reading and the kernel queues (or overflows,
// which the kernel boundary reports and rescans); a FUSE handler waits,
// which slows the writer. Ops emitted before Run starts are queued; ops
// emitted after Run returned are dropped and counted (Stats.Closed).
//
// Ordering: events of one path (and of a directory and the names in it)
// are published in the order the bridge took their ops — for a merged
// event, when it took the FUSE op (or, for a passthrough write, the kernel
// write). A held event delays only later events on the same paths.
type Bridge struct {
	opts Options
	log  *slog.Logger
	st   counters
	c    *correlator

	running atomic.Bool
	inv     atomic.Pointer[invalidatorBox]

	// qmu guards the input queue.
	qmu     sync.Mutex
	notFull *sync.Cond
	q       []*capture.Op
	qcap    int
	closed  bool
	parked  bool // the correlator waits to be woken (not napping)
	wake    chan struct{}

	// omu guards the outbox between the correlator and the publisher.
	omu      sync.Mutex
	outbox   []*event.Event
	outDone  bool
	outWake  chan struct{}
	outSpace chan struct{}
	outFull  chan struct{} // the outbox holds a full batch, or the correlator is done: end a nap
	pubNap   *time.Timer

	released []*event.Event // correlator's output of one round (Run goroutine)

	// lostN events were given up since the last loss report, all in the
	// tree lostDir (publisher goroutine only).
	lostN   int64
	lostDir string

	closedLogged atomic.Bool
}

// New returns a Bridge for opts.
func New(opts Options) (*Bridge, error) {
	if opts.Publisher == nil {
		return nil, ErrNoPublisher
	}
	if (opts.Backing == "") != (opts.Mount == "") ||
		(opts.Backing != "" && (!filepath.IsAbs(opts.Backing) || !filepath.IsAbs(opts.Mount))) {
		return nil, fmt.Errorf("%w: backing %q, mount %q", ErrMountPair, opts.Backing, opts.Mount)
	}
	if opts.Source == "" {
		host, _ := os.Hostname()
		opts.Source = "semprop://" + host
	}
	if opts.Window <= 0 {
		opts.Window = 50 * time.Millisecond
	}
	if opts.MaxWindow == 0 {
		opts.MaxWindow = 10 * opts.Window
	}
	opts.MaxWindow = max(opts.MaxWindow, opts.Window)
	if opts.DedupSize == 0 {
		opts.DedupSize = 4096
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = 8192
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 1024
	}
	if opts.BatchDelay == 0 {
		opts.BatchDelay = 2 * time.Millisecond
	}
	if opts.PublishDelay == 0 {
		opts.PublishDelay = 20 * time.Millisecond
	}
	if opts.FlushTimeout <= 0 {
		opts.FlushTimeout = 5 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.now == nil {
		opts.now = time.Now
	}
	if opts.Backing != "" {
		opts.Backing, opts.Mount = filepath.Clean(opts.Backing), filepath.Clean(opts.Mount)
		// The kernel boundary reports real paths (it resolves its root);
		// the FUSE boundary reports paths under the mount point as given.
		if real, err := filepath.EvalSymlinks(opts.Backing); err == nil {
			opts.Backing = real
		}
	}
	b := &Bridge{
		opts: opts, log: opts.Logger,
		qcap: opts.QueueSize, q: make([]*capture.Op, 0, 256),
		wake: make(chan struct{}, 1), outWake: make(chan struct{}, 1), outSpace: make(chan struct{}, 1),
		outFull: make(chan struct{}, 1), pubNap: time.NewTimer(time.Hour),
	}
	b.notFull = sync.NewCond(&b.qmu)
	b.st.window.Store(int64(opts.Window))
	b.SetInvalidator(opts.Invalidator)
	bridged := opts.Mount != ""
	cfg := config{
		window:        opts.Window,
		maxWindow:     opts.MaxWindow,
		selfPID:       opts.SelfPID,
		backing:       opts.Backing,
		mount:         opts.Mount,
		bridged:       bridged,
		holdWrites:    bridged && !opts.NoPassthrough,
		invalidate:    bridged && !opts.noInvalidate,
		publishOrphan: opts.PublishOrphans,
		srcKernel:     opts.Source + "/kernel",
		srcFUSE:       opts.Source + "/fuse",
	}
	b.c = newCorrelator(cfg, &b.st, opts.DedupSize,
		func(ev *event.Event) { b.released = append(b.released, ev) },
		b.invalidate)
	return b, nil
}

type invalidatorBox struct{ Invalidator }

// SetInvalidator sets (or replaces) the Invalidator, for when the FUSE
// boundary can only be mounted after the bridge exists (its sink is
// Bridge.FUSE). It is safe for concurrent use; invalidations due before it
// is set are not sent.
func (b *Bridge) SetInvalidator(inv Invalidator) {
	if inv == nil {
		b.inv.Store(nil)
		return
	}
	b.inv.Store(&invalidatorBox{inv})
}

type sink struct {
	b  *Bridge
	bd event.Boundary
}

func (s sink) Emit(op *capture.Op) { s.b.enqueue(op, s.bd) }

var _ capture.Sink = sink{}

// Kernel returns the sink for the kernel boundary. Its Emit is safe for
// concurrent use and waits only when the queue is full.
func (b *Bridge) Kernel() capture.Sink { return sink{b, event.BoundaryKernel} }

// FUSE returns the sink for the FUSE boundary. Its Emit is safe for
// concurrent use, never calls back into FUSE and waits only when the queue
// is full.
func (b *Bridge) FUSE() capture.Sink { return sink{b, event.BoundaryFUSE} }

func (b *Bridge) enqueue(op *capture.Op, bd event.Boundary) {
	op.Boundary = bd
	b.qmu.Lock()
	if len(b.q) >= b.qcap && !b.closed {
		b.st.queueFull.Add(1)
		for len(b.q) >= b.qcap && !b.closed {
			b.notFull.Wait()
		}
	}
	if b.closed {
		b.qmu.Unlock()
		b.st.closed.Add(1)
		if !b.closedLogged.Swap(true) {
			// A boundary outlived the bridge: stop the boundaries first.
			b.log.Error("bridge: op emitted after the bridge stopped, dropped (counted in closed ops)",
				"type", op.Kind.String(), "path", op.Path)
		}
		return
	}
	b.q = append(b.q, op)
	wake := b.parked && len(b.q) == 1
	b.qmu.Unlock()
	if wake {
		select {
		case b.wake <- struct{}{}:
		default:
		}
	}
}

func (b *Bridge) invalidate(k InvalKind, rel string) {
	box := b.inv.Load()
	if box == nil {
		return
	}
	inv := box.Invalidator
	b.st.invalidations.Add(1)
	switch k {
	case InvalContent:
		inv.InvalidateContent(rel)
	case InvalEntry, InvalDelete:
		dir, name := splitRel(rel)
		if k == InvalEntry {
			inv.InvalidateEntry(dir, name)
		} else {
			inv.InvalidateDelete(dir, name)
		}
	}
}

// splitRel splits a backing-relative path into its directory ("" for the
// root) and name.
func splitRel(rel string) (dir, name string) {
	for i := len(rel) - 1; i >= 0; i-- {
		if rel[i] == '/' {
			return rel[:i], rel[i+1:]
		}
	}
	return "", rel
}

// Run correlates ops, sends invalidations and publishes events in batches
// until ctx is done; then it settles and publishes what it holds (within
// Options.FlushTimeout) and returns ctx's error. It may be called once.
func (b *Bridge) Run(ctx context.Context) error {
	if !b.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	var wg sync.WaitGroup
	pubCtx := context.WithoutCancel(ctx)
	wg.Go(func() { b.publishLoop(pubCtx) })

	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	nap := time.NewTimer(time.Hour)
	defer nap.Stop()
	var batch []*capture.Op
	busy := false // the last round had ops: nap rather than park
	for done := false; !done; {
		if busy {
			nap.Reset(b.opts.BatchDelay)
			select {
			case <-ctx.Done():
				done = true
			case <-nap.C:
			}
		} else {
			b.qmu.Lock()
			b.parked = len(b.q) == 0
			parked := b.parked
			b.qmu.Unlock()
			if parked {
				select {
				case <-ctx.Done():
					done = true
				case <-b.wake:
				case <-timer.C:
				}
			}
		}
		if done {
			b.qmu.Lock()
			b.closed = true
			b.notFull.Broadcast()
			b.qmu.Unlock()
		}
		batch = b.takeQueue(batch)
		busy = len(batch) > 0 && b.opts.BatchDelay > 0
		now := b.opts.now()
		for i, op := range batch {
			b.c.add(op, now)
			batch[i] = nil
		}
		if done {
			b.c.flush()
		} else {
			b.c.expire(now)
		}
		b.st.pending.Store(int64(b.c.pending))
		b.st.window.Store(int64(b.c.win))
		if !b.handOver(ctx, done) {
			done = true
		}
		if d, ok := b.c.nextDeadline(); ok && !done {
			timer.Reset(max(d.Sub(b.opts.now()), 0))
		}
	}
	b.omu.Lock()
	b.outDone = true
	b.omu.Unlock()
	signal(b.outWake)
	signal(b.outFull)
	wg.Wait()
	return ctx.Err()
}

func (b *Bridge) takeQueue(spare []*capture.Op) []*capture.Op {
	b.qmu.Lock()
	batch := b.q
	b.q = spare[:0]
	b.parked = false
	b.notFull.Broadcast()
	b.qmu.Unlock()
	return batch
}

// handOver moves released events to the publisher, waiting while the
// outbox is over its bound (backpressure). It returns false when ctx ended
// while waiting.
func (b *Bridge) handOver(ctx context.Context, final bool) bool {
	if len(b.released) == 0 {
		return true
	}
	limit := 4 * b.opts.MaxBatch
	for {
		b.omu.Lock()
		if len(b.outbox) < limit || final {
			b.outbox = append(b.outbox, b.released...)
			full := len(b.outbox) >= b.opts.MaxBatch
			b.omu.Unlock()
			clear(b.released)
			b.released = b.released[:0]
			signal(b.outWake)
			if full {
				signal(b.outFull)
			}
			return true
		}
		b.omu.Unlock()
		select {
		case <-b.outSpace:
		case <-ctx.Done():
			final = true
		}
	}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// publishLoop publishes the outbox in batches until the correlator is done
// and the outbox is empty.
func (b *Bridge) publishLoop(ctx context.Context) {
	var spare []*event.Event
	for {
		<-b.outWake
		for {
			b.omu.Lock()
			evs, done := b.outbox, b.outDone
			b.outbox = spare[:0]
			b.omu.Unlock()
			signal(b.outSpace)
			if len(evs) == 0 {
				if done {
					return
				}
				spare = evs
				break
			}
			pc := ctx
			if done {
				var cancel context.CancelFunc
				pc, cancel = context.WithTimeout(ctx, b.opts.FlushTimeout)
				defer cancel()
			}
			for i := 0; i < len(evs); i += b.opts.MaxBatch {
				b.publish(pc, evs[i:min(i+b.opts.MaxBatch, len(evs))])
			}
			clear(evs)
			spare = evs[:0]
			if !done && b.opts.PublishDelay > 0 {
				b.publishNap(ctx)
			}
		}
	}
}

// publishNap waits PublishDelay, or less if the outbox fills up to a batch
// or the correlator finishes.
func (b *Bridge) publishNap(ctx context.Context) {
	b.omu.Lock()
	skip := len(b.outbox) >= b.opts.MaxBatch || b.outDone
	b.omu.Unlock()
	if skip {
		return
	}
	b.pubNap.Reset(b.opts.PublishDelay)
	select {
	case <-b.pubNap.C:
	case <-b.outFull:
	case <-ctx.Done():
	}
}

// publish hands one batch to the publisher, retrying a failed call with
// backoff a few times before giving the events up (counted in Stats.Lost).
// Events given up are not lost silently: an fs.overflow event with reason
// "publish", their number and the tree they were in goes out at the head
// of the next batch (and is retried with it until it does).
func (b *Bridge) publish(ctx context.Context, evs []*event.Event) {
	batch := evs
	if b.lostN > 0 {
		batch = append([]*event.Event{b.lossEvent()}, evs...)
	}
	backoff := 10 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := b.opts.Publisher.PublishBatch(ctx, batch)
		if err == nil {
			b.st.emitted.Add(uint64(len(batch)))
			b.st.batches.Add(1)
			if len(batch) > len(evs) {
				b.st.lossReports.Add(1)
				b.log.Warn("bridge: published the loss of events", "events", b.lostN, "tree", b.lostDir)
				b.lostN, b.lostDir = 0, ""
			}
			return
		}
		b.st.publishErrors.Add(1)
		if attempt == 3 || ctx.Err() != nil {
			b.giveUp(evs, err)
			return
		}
		b.log.Warn("bridge: publish failed, retrying", "events", len(evs), "attempt", attempt, "err", err)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
		}
		backoff *= 10
	}
}

// giveUp counts evs lost and notes them for the next loss report.
func (b *Bridge) giveUp(evs []*event.Event, err error) {
	b.st.lost.Add(uint64(len(evs)))
	b.log.Error("bridge: events lost; an fs.overflow event will report them", "events", len(evs), "err", err)
	for _, ev := range evs {
		if b.lostN == 0 && b.lostDir == "" {
			b.lostDir = path.Dir(ev.Subject)
			if ev.Type == event.TypeMkdir || ev.Type == event.TypeOverflow || ev.Type == event.TypeRescan {
				b.lostDir = ev.Subject
			}
		}
		b.lostDir = commonDir(b.lostDir, ev.Subject)
	}
	b.lostN += int64(len(evs))
}

// lossEvent is the fs.overflow event for the events given up so far.
func (b *Bridge) lossEvent() *event.Event {
	op := &capture.Op{Kind: capture.KindOverflow, Boundary: event.BoundaryKernel, Path: b.lostDir, IsDir: true,
		Time: time.Now(), Count: b.lostN, Reason: capture.ReasonPublish}
	ev := new(event.Event)
	Translate(op, ev)
	ev.Source = b.opts.Source + "/kernel"
	return ev
}

// commonDir is the longest directory path that holds both a (a directory)
// and p.
func commonDir(a, p string) string {
	for a != "/" && a != "." && a != "" && p != a && !strings.HasPrefix(p, a+"/") {
		a = path.Dir(a)
	}
	if a == "." || a == "" {
		return "/"
	}
	return a
}

// Stats returns the current counters. It is safe for concurrent use.
func (b *Bridge) Stats() Stats {
	s := &b.st
	b.qmu.Lock()
	queued := len(b.q)
	b.qmu.Unlock()
	return Stats{
		SeenKernel: s.seenKernel.Load(), SeenFUSE: s.seenFUSE.Load(),
		Shadows: s.shadows.Load(), Merged: s.merged.Load(), Absorbed: s.absorbed.Load(),
		Orphans: s.orphans.Load(), LateShadows: s.late.Load(), StallWaits: s.stallWaits.Load(), LateFUSE: s.lateFUSE.Load(), PassthroughMerged: s.passthroughMerged.Load(), Coalesced: s.coalesced.Load(),
		FUSEOnly: s.fuseOnly.Load(), KernelOnly: s.kernelOnly.Load(),
		DedupHits:     s.dedupHits.Load(),
		RescanCovered: s.rescanCovered.Load(),
		Invalidations: s.invalidations.Load(),
		Emitted:       s.emitted.Load(), Batches: s.batches.Load(),
		PublishErrors: s.publishErrors.Load(), Lost: s.lost.Load(),
		LossReports: s.lossReports.Load(), Invalid: s.invalid.Load(),
		Pending: int(s.pending.Load()), Window: time.Duration(s.window.Load()), Queued: queued,
		QueueFull: s.queueFull.Load(), Closed: s.closed.Load(),
	}
}
