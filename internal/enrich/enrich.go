package enrich

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/metrics"
)

// Errors returned by New.
var (
	ErrNoNext   = errors.New("enrich: no next publisher")
	ErrRoot     = errors.New("enrich: root and backing must be absolute paths")
	ErrHash     = errors.New("enrich: unknown hash algorithm")
	ErrVCSMode  = errors.New("enrich: unknown vcs mode")
	ErrPatterns = errors.New("enrich: ignore pattern too long")
)

// Extension attributes the Publisher sets.
const (
	AttrHash        = "hash"        // hex content digest
	AttrChanged     = "changed"     // "false" when the content is the last known content of the path
	AttrPrevSize    = "prevsize"    // size of the last known content
	AttrMime        = "mime"        // media type from magic bytes
	AttrMimeChanged = "mimechanged" // "true" when the media type differs from the last known one
	AttrEntropy     = "entropy"     // Shannon entropy, bits per byte, of the content (or a sample)
	AttrPrevEntropy = "preventropy" // the same of the last known content
	AttrLines       = "lines"       // text files, with Options.Counts
	AttrWords       = "words"       // text files, with Options.Counts
	AttrEnrich      = "enrich"      // why facts are missing: gone, skipped, toolarge, coalesced, error
)

// BatchPublisher is the interface of the next stage; the bridge's
// Publisher interface has the same method, and the propagation manager
// implements it. PublishBatch blocks until the events are durable.
type BatchPublisher interface {
	PublishBatch(ctx context.Context, evs []*event.Event) error
}

// Options configure an enriching Publisher for one tree.
type Options struct {
	// Next receives the events that are not ignored or held, enriched.
	Next BatchPublisher
	// Root is the tree's root as event subjects name it: the watched root,
	// or the mount point of a FUSE mount. Absolute.
	Root string
	// Backing is where files are read: the backing tree of a mount. Empty
	// means Root (a watched tree). Subjects under Root or under Backing are
	// both mapped to it; files are never read through Root when Backing is
	// set, so the daemon never reads its own mount.
	Backing string
	// Dir is where the index of last-known facts lives (e.g.
	// DATA/enrich/TREE); empty keeps it in memory only.
	Dir string
	// IndexSize bounds the paths the index remembers; 0 means 100000.
	IndexSize int

	// Ignore are gitignore patterns anchored at the root, below every
	// .sempropignore file in precedence.
	Ignore []string
	// NoIgnoreFiles: do not read .sempropignore files.
	NoIgnoreFiles bool

	// NoContent switches content facts off (ignore rules and VCS still apply).
	NoContent bool
	// Hash is HashXXH3 (default) or HashSHA256.
	Hash string
	// Counts adds line and word counts to text files.
	Counts bool
	// Workers is the number of content readers; 0 means GOMAXPROCS.
	Workers int
	// Wait is how long a batch waits for its content facts before it is
	// published without the missing ones (flagged enrich=skipped); 0
	// means 200ms.
	Wait time.Duration
	// MaxSize: larger files are not read (flagged enrich=toolarge); 0
	// means 256 MiB.
	MaxSize int64
	// MaxQueue bounds the paths waiting for a reader; past it events are
	// flagged enrich=skipped at once. 0 means 4096.
	MaxQueue int

	// VCS is what happens to the events under .git/ of a git operation:
	// VCSPass (the default), VCSSummarise or VCSDrop.
	VCS VCSMode
	// VCSQuiet is how long after index.lock is gone, without further
	// events under .git/, an operation ends; 0 means 200ms.
	VCSQuiet time.Duration

	// Logger receives index errors; nil discards.
	Logger *slog.Logger

	// readHook, when set, runs before each file is read (tests).
	readHook func(path string)
}

// Stats are the Publisher's counters, read with Publisher.Stats.
type Stats struct {
	Events    uint64 // events taken
	Ignored   uint64 // events dropped by ignore rules
	Enriched  uint64 // events that got content facts
	Unchanged uint64 // of these, with changed=false
	Gone      uint64 // flagged enrich=gone
	Skipped   uint64 // flagged enrich=skipped (the wait ran out, or the queue was full)
	QueueFull uint64 // of the skipped, because the queue was full
	TooLarge  uint64 // flagged enrich=toolarge
	Coalesced uint64 // flagged enrich=coalesced (a later event of the path carries the facts), or superseded in the queue
	Errors    uint64 // flagged enrich=error
	Bytes     uint64 // content bytes read
	VCSHeld   uint64 // events under .git/ held by git operations
	VCSOps    uint64 // git operations ended (one vcs.git event each in summarise mode)
	Retries   uint64 // batches re-sent after the next publisher failed

	Queued  int // paths waiting for a reader now
	Indexed int // paths in the index now
}

type counters struct {
	events, ignored, enriched, unchanged, gone, skipped, queueFull atomic.Uint64
	tooLarge, coalesced, errors, bytes, vcsHeld, vcsOps, retries   atomic.Uint64
	delay                                                          metrics.Histogram
}

// Publisher enriches the events of one tree and passes them on: it drops
// ignored events, holds and summarises git operations, and adds content
// facts. PublishBatch and Stats are safe for concurrent use; calls to
// PublishBatch are serialised, and each publishes its events to Next in
// the order it got them (less those dropped or held), in one batch.
//
// Waiting: a batch waits until the facts of all its events are known or
// Options.Wait has passed since it came, whichever is first, so a slow file
// delays the events behind it by at most Wait. Reading goes on after the
// wait (the index learns the content), but its result reaches no event.
// When a wait runs out the readers are behind: until they have nothing
// queued or in progress again, batches do not wait at all (what is not ready is flagged
// skipped), so a storm costs capture at most one Wait.
type Publisher struct {
	opts Options
	log  *slog.Logger
	ign  *ignorer
	ix   *index
	pool *pool
	st   counters

	// mu serialises publishing to Next: PublishBatch and the VCS flusher.
	mu    sync.Mutex
	vcs   *vcsTracker
	retry retryBatch
	// behind is set when a batch's wait ran out: until the readers have
	// caught up (nothing queued or being read), batches do not wait.
	behind   bool
	ixFailed bool // the index could not be written (logged once)

	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

// retryBatch is a batch Next refused: the bridge calls again with the same
// events, which get the same output rather than a second enrichment.
type retryBatch struct {
	first, last *event.Event
	n           int
	out         []*event.Event
}

var _ BatchPublisher = (*Publisher)(nil)

// New returns a Publisher for one tree and starts its readers. Close it.
func New(opts Options) (*Publisher, error) {
	if opts.Next == nil {
		return nil, ErrNoNext
	}
	if opts.Backing == "" {
		opts.Backing = opts.Root
	}
	if !filepath.IsAbs(opts.Root) || !filepath.IsAbs(opts.Backing) {
		return nil, ErrRoot
	}
	opts.Root, opts.Backing = filepath.Clean(opts.Root), filepath.Clean(opts.Backing)
	switch opts.Hash {
	case "":
		opts.Hash = HashXXH3
	case HashXXH3, HashSHA256:
	default:
		return nil, fmt.Errorf("%w: %q", ErrHash, opts.Hash)
	}
	switch opts.VCS {
	case "":
		opts.VCS = VCSPass
	case VCSPass, VCSSummarise, VCSDrop:
	default:
		return nil, fmt.Errorf("%w: %q", ErrVCSMode, opts.VCS)
	}
	for _, p := range opts.Ignore {
		if len(p) > 4096 {
			return nil, ErrPatterns
		}
	}
	if opts.IndexSize <= 0 {
		opts.IndexSize = 100000
	}
	if opts.Workers <= 0 {
		opts.Workers = runtime.GOMAXPROCS(0)
	}
	if opts.Wait <= 0 {
		opts.Wait = 200 * time.Millisecond
	}
	if opts.MaxSize <= 0 {
		opts.MaxSize = 256 << 20
	}
	if opts.MaxQueue <= 0 {
		opts.MaxQueue = 4096
	}
	if opts.VCSQuiet <= 0 {
		opts.VCSQuiet = 200 * time.Millisecond
	}
	p := &Publisher{opts: opts, log: opts.Logger, stop: make(chan struct{})}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	p.ign = newIgnorer(opts.Backing, opts.Ignore, opts.NoIgnoreFiles, 65536)
	p.vcs = newVCSTracker(opts.VCS, opts.VCSQuiet)
	ix, err := openIndex(opts.Dir, opts.IndexSize)
	if err != nil {
		return nil, err
	}
	p.ix = ix
	if !opts.NoContent {
		p.pool = newPool(opts.Workers, opts.MaxQueue, p.read)
	}
	if opts.VCS != VCSPass {
		p.wg.Go(p.vcsLoop)
	}
	return p, nil
}

// Close stops the readers and the VCS flusher, publishes the summaries of
// git operations still in progress (bounded by ctx), and closes the index.
// Call it after the bridge that publishes to p has stopped: events
// published after Close pass without facts, flagged skipped.
func (p *Publisher) Close(ctx context.Context) error {
	var err error
	p.once.Do(func() {
		close(p.stop)
		p.wg.Wait()
		if p.pool != nil {
			p.pool.close()
		}
		p.mu.Lock()
		sums, n := p.vcs.finish(time.Now(), nil, true)
		p.st.vcsOps.Add(uint64(n))
		if len(sums) > 0 {
			err = p.opts.Next.PublishBatch(ctx, sums)
		}
		p.mu.Unlock()
		if cerr := p.ix.close(); err == nil {
			err = cerr
		}
	})
	return err
}

// rel maps a subject to the path relative to the tree root; ok is false
// for a path outside the tree.
func (p *Publisher) rel(subject string) (string, bool) {
	for _, root := range [2]string{p.opts.Root, p.opts.Backing} {
		if subject == root {
			return "", true
		}
		if strings.HasPrefix(subject, root) && len(subject) > len(root) && (subject[len(root)] == '/' || root == "/") {
			r := strings.TrimPrefix(subject[len(root):], "/")
			return r, true
		}
	}
	return "", false
}

// backingPath is where rel is read.
func (p *Publisher) backingPath(rel string) string {
	return filepath.Join(p.opts.Backing, filepath.FromSlash(rel))
}

// pending is an event waiting for its content facts.
type pending struct {
	ev *event.Event
	j  *job
}

// PublishBatch drops the ignored events of evs, holds those of git
// operations, adds content facts to the rest and publishes them to Next
// (see the type's doc for ordering and waiting). It returns Next's error.
func (p *Publisher) PublishBatch(ctx context.Context, evs []*event.Event) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if r := &p.retry; r.n > 0 {
		if len(evs) == r.n && evs[0] == r.first && evs[len(evs)-1] == r.last {
			p.st.retries.Add(1)
			err := p.opts.Next.PublishBatch(ctx, r.out)
			if err == nil {
				*r = retryBatch{}
			}
			return err
		}
		*r = retryBatch{}
	}
	start := time.Now()
	deadline := start.Add(p.opts.Wait)
	if p.behind && (p.pool == nil || p.pool.busy() == 0) {
		p.behind = false
	}
	if p.behind {
		deadline = start // shed load: take only what is ready
	}
	p.st.events.Add(uint64(len(evs)))

	sums, _ := p.vcsSummariesLocked(start)
	out := make([]*event.Event, 0, len(sums)+len(evs))
	out = append(out, sums...)
	var waits []pending
	leaves := p.leaving(evs)
	for i, ev := range evs {
		rel, inTree := p.rel(ev.Subject)
		if inTree && p.dropIgnored(ev, rel) {
			p.st.ignored.Add(1)
			continue
		}
		if p.vcs.hold(ev, start) {
			p.st.vcsHeld.Add(1)
			continue
		}
		if inTree {
			p.noteIndex(ev, rel)
			if last, ok := leaves[rel]; ok && last > i && hasContent(ev) {
				// Deleted or renamed away later in this batch: what is at
				// the path now is a successor, or nothing.
				p.flag(ev, flagGone)
			} else if j := p.enrichJob(ev, rel); j != nil {
				waits = append(waits, pending{ev: ev, j: j})
			}
		}
		out = append(out, ev)
	}
	if p.await(ctx, waits, deadline) {
		p.behind = true
	}
	if err := p.ix.flush(); err != nil && !p.ixFailed {
		p.ixFailed = true // the error is sticky: say it once
		p.log.Warn("enrich: index not written; facts are kept in memory only", "root", p.opts.Root, "err", err)
	}
	p.st.delay.ObserveDuration(time.Since(start))
	if len(out) == 0 {
		return nil
	}
	err := p.opts.Next.PublishBatch(ctx, out)
	if err != nil && len(evs) > 0 {
		p.retry = retryBatch{first: evs[0], last: evs[len(evs)-1], n: len(evs), out: out}
	}
	return err
}

// dropIgnored reports whether ev is ignored; it first notes a change of
// an ignore file or of a directory for the ignore cache.
func (p *Publisher) dropIgnored(ev *event.Event, rel string) bool {
	switch ev.Type {
	case event.TypeOverflow, event.TypeRescan:
		p.ign.touched("", true) // anything may have changed
		return false
	}
	isDir := ev.Type == event.TypeMkdir || ev.Type == event.TypeRmdir
	if v, _ := ev.Attr("isdir"); v == "true" {
		isDir = true
	}
	if ev.Type == event.TypeRmdir || (isDir && ev.Type == event.TypeRename) {
		p.ign.touched(rel, true)
	}
	if isIgnoreFile(rel) {
		p.ign.touched(rel, false)
	}
	if ev.Type == event.TypeRename && ev.Context.OldPath != "" {
		if old, ok := p.rel(ev.Context.OldPath); ok && isIgnoreFile(old) {
			p.ign.touched(old, false)
		}
	}
	if !p.ign.ignored(rel, isDir) {
		return false
	}
	if ev.Type == event.TypeRename && ev.Context.OldPath != "" {
		// A rename out of view is dropped only if its old name was out
		// of view too: else the consumer would never see that name go.
		if old, ok := p.rel(ev.Context.OldPath); ok && !p.ign.ignored(old, isDir) {
			return false
		}
	}
	return true
}

// noteIndex keeps the index in step with deletes and renames.
func (p *Publisher) noteIndex(ev *event.Event, rel string) {
	switch ev.Type {
	case event.TypeDelete:
		p.ix.forget(rel, false)
	case event.TypeRmdir:
		p.ix.forget(rel, true)
	case event.TypeRename:
		old, ok := p.rel(ev.Context.OldPath)
		if !ok || old == "" {
			return
		}
		if v, _ := ev.Attr("isdir"); v == "true" {
			p.ix.forget(rel, true)
			p.ix.move(old, rel)
		} else {
			p.ix.forget(old, false)
		}
	}
}

// leaving maps the paths (relative to the root) that events of evs delete
// or rename away to the index of the last such event; nil when none does.
func (p *Publisher) leaving(evs []*event.Event) map[string]int {
	if p.pool == nil {
		return nil
	}
	var m map[string]int
	for i, ev := range evs {
		var from string
		switch ev.Type {
		case event.TypeDelete:
			from = ev.Subject
		case event.TypeRename:
			from = ev.Context.OldPath
		default:
			continue
		}
		if rel, ok := p.rel(from); ok && rel != "" {
			if m == nil {
				m = make(map[string]int)
			}
			m[rel] = i
		}
	}
	return m
}

// hasContent reports whether ev is of a type that gets content facts
// (enrichJob decides the rest).
func hasContent(ev *event.Event) bool {
	if _, ok := ev.Attr(AttrHash); ok {
		return false
	}
	if _, ok := ev.Attr(AttrEnrich); ok {
		return false
	}
	switch ev.Type {
	case event.TypeWrite:
		return true
	case event.TypeCreate:
		return !ev.Context.Has(event.HasSize) || ev.Context.Size > 0
	case event.TypeRename:
		v, _ := ev.Attr("isdir")
		return v != "true"
	}
	return false
}

// enrichJob submits the content job of ev, if its type has content.
func (p *Publisher) enrichJob(ev *event.Event, rel string) *job {
	if p.pool == nil || rel == "" {
		return nil
	}
	switch ev.Type {
	case event.TypeWrite:
	case event.TypeCreate:
		if ev.Context.Has(event.HasSize) && ev.Context.Size == 0 {
			return nil // an empty new file has no content to describe
		}
	case event.TypeRename:
		if v, _ := ev.Attr("isdir"); v == "true" {
			return nil
		}
	default:
		return nil
	}
	if _, ok := ev.Attr(AttrHash); ok {
		return nil // enriched already
	}
	if _, ok := ev.Attr(AttrEnrich); ok {
		return nil
	}
	if ev.Context.Has(event.HasSize) && ev.Context.Size > p.opts.MaxSize {
		p.flag(ev, flagTooLarge)
		return nil
	}
	j := &job{rel: rel, path: p.backingPath(rel), done: make(chan struct{})}
	ok, superseded := p.pool.submit(j)
	if superseded {
		p.st.coalesced.Add(1)
	}
	if !ok {
		p.st.queueFull.Add(1)
		p.flag(ev, flagSkipped)
		return nil
	}
	return j
}

// read runs one job on a worker.
func (p *Publisher) read(j *job) {
	if h := p.opts.readHook; h != nil {
		h(j.path)
	}
	c, flag, err := readContent(j.path, p.opts.Hash, p.opts.Counts, p.opts.MaxSize)
	j.res, j.flag, j.err = c, flag, err
	if flag != "" || err != nil {
		if flag == flagGone {
			p.ix.forget(j.rel, false)
		}
		return
	}
	p.st.bytes.Add(uint64(c.Size))
	j.prev, j.hasPrv = p.ix.swap(j.rel, c.Facts)
}

// await waits for the jobs until deadline and stamps their events, in
// order. It reports whether the deadline ran out with jobs unfinished.
func (p *Publisher) await(ctx context.Context, waits []pending, deadline time.Time) (expired bool) {
	if len(waits) == 0 {
		return false
	}
	var timer *time.Timer
	for _, w := range waits {
		if !expired {
			select {
			case <-w.j.done:
			default:
				if timer == nil {
					timer = time.NewTimer(time.Until(deadline))
					defer timer.Stop()
				}
				select {
				case <-w.j.done:
				case <-timer.C:
					expired = true
				case <-ctx.Done():
					expired = true
				}
			}
		}
		select {
		case <-w.j.done:
		default:
			p.flag(w.ev, flagSkipped)
			continue
		}
		if w.j.flag == flagCoalesced {
			p.flag(w.ev, flagCoalesced)
			continue
		}
		p.stamp(w.ev, w.j)
	}
	return expired
}

// flag sets the enrich attribute and counts it.
func (p *Publisher) flag(ev *event.Event, flag string) {
	switch flag {
	case flagGone:
		p.st.gone.Add(1)
	case flagSkipped:
		p.st.skipped.Add(1)
	case flagTooLarge:
		p.st.tooLarge.Add(1)
	case flagCoalesced:
		// counted when superseded
	case flagError:
		p.st.errors.Add(1)
	}
	ev.SetAttr(AttrEnrich, flag)
}

// stamp adds the facts of a finished job to ev.
func (p *Publisher) stamp(ev *event.Event, j *job) {
	if j.flag != "" {
		if j.flag == flagError {
			p.log.Debug("enrich: read", "path", j.path, "err", j.err)
		}
		p.flag(ev, j.flag)
		return
	}
	if j.err != nil { // not a regular file: nothing to say
		return
	}
	c := &j.res
	if ev.Type == event.TypeCreate && c.Size == 0 {
		return // an empty new file: nothing to describe yet
	}
	p.st.enriched.Add(1)
	ev.SetAttr(AttrHash, c.Hash)
	ev.SetAttr(AttrMime, c.Mime)
	ev.SetAttr(AttrEntropy, formatEntropy(c.Entropy))
	if !ev.Context.Has(event.HasSize) {
		ev.Context.SetSize(c.Size)
	}
	if j.hasPrv {
		changed := j.prev.Hash != c.Hash || j.prev.Size != c.Size
		if !changed {
			p.st.unchanged.Add(1)
		}
		ev.SetAttr(AttrChanged, strconv.FormatBool(changed))
		ev.SetAttr(AttrPrevSize, strconv.FormatInt(j.prev.Size, 10))
		ev.SetAttr(AttrMimeChanged, strconv.FormatBool(j.prev.Mime != c.Mime))
		ev.SetAttr(AttrPrevEntropy, formatEntropy(j.prev.Entropy))
	}
	if p.opts.Counts && c.text {
		ev.SetAttr(AttrLines, strconv.FormatInt(c.lines, 10))
		ev.SetAttr(AttrWords, strconv.FormatInt(c.words, 10))
	}
}

func formatEntropy(e float64) string { return strconv.FormatFloat(e, 'f', 3, 64) }

// vcsSummariesLocked ends the git operations that are over. p.mu is held.
func (p *Publisher) vcsSummariesLocked(now time.Time) ([]*event.Event, int) {
	if p.vcs.active() == 0 {
		return nil, 0
	}
	sums, n := p.vcs.finish(now, p.lockGone, false)
	p.st.vcsOps.Add(uint64(n))
	return sums, n
}

// lockGone reports whether the index.lock of a repository (as events name
// it) is absent from the backing tree.
func (p *Publisher) lockGone(repo string) bool {
	rel, ok := p.rel(repo)
	if !ok {
		return true
	}
	f, err := openNoATime(p.backingPath(path.Join(rel, ".git", indexLock)))
	if err != nil {
		return true
	}
	_ = f.Close()
	return false
}

// vcsLoop publishes the summaries of git operations that end while no
// batch comes.
func (p *Publisher) vcsLoop() {
	t := time.NewTicker(max(p.opts.VCSQuiet/2, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
		p.mu.Lock()
		sums, _ := p.vcsSummariesLocked(time.Now())
		if len(sums) > 0 {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if err := p.opts.Next.PublishBatch(ctx, sums); err != nil {
				p.log.Warn("enrich: vcs summary lost", "root", p.opts.Root, "events", len(sums), "err", err)
			}
			cancel()
		}
		p.mu.Unlock()
	}
}

// Stats returns the counters.
func (p *Publisher) Stats() Stats {
	s := Stats{
		Events: p.st.events.Load(), Ignored: p.st.ignored.Load(), Enriched: p.st.enriched.Load(),
		Unchanged: p.st.unchanged.Load(), Gone: p.st.gone.Load(), Skipped: p.st.skipped.Load(),
		QueueFull: p.st.queueFull.Load(), TooLarge: p.st.tooLarge.Load(), Coalesced: p.st.coalesced.Load(),
		Errors: p.st.errors.Load(), Bytes: p.st.bytes.Load(), VCSHeld: p.st.vcsHeld.Load(),
		VCSOps: p.st.vcsOps.Load(), Retries: p.st.retries.Load(), Indexed: p.ix.len(),
	}
	if p.pool != nil {
		s.Queued = p.pool.queued()
	}
	return s
}
