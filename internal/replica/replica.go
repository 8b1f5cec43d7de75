package replica

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/atomicfile"
)

// Source reads durable events in seq order (a *propagate.Reader).
type Source interface {
	Next(ctx context.Context, ev *event.Event) error
	Close() error
}

// Options configure a Replica.
type Options struct {
	Config Config
	// Dir holds the saved catalog (the daemon passes DATA/sync).
	Dir string
	// Open returns a reader of the durable stream from seq from: the
	// daemon passes manager.Reader.
	Open func(from uint64) (Source, error)
	// Start is the first seq read at the very first start (default 1: the
	// whole journal); later starts resume after the saved checkpoint.
	Start uint64
	// Resolve maps an absolute path to its tree's name and the path
	// relative to the tree's root; ok is false for paths outside every
	// named tree, which the catalog ignores.
	Resolve func(abs string) (tree, rel string, ok bool)
	// Abs maps a key back to an absolute path on this instance (ok false
	// for a tree this instance does not have); reads check the caller's
	// paths against it. Nil: keys are checked as "TREE/PATH".
	Abs func(tree, rel string) (string, bool)
	// LinearizableRead, if set, waits for a linearizable read point of
	// the Raft cluster (its read index); consistency=strong is refused
	// without it. LastSeq then tells the journal's last seq, which the
	// catalog must reach before a strong read is served.
	LinearizableRead func(ctx context.Context) error
	LastSeq          func() uint64
	// Transport carries requests to peers (default: one built from
	// Config.TLS). Tests pass one that can partition the network.
	Transport http.RoundTripper
	Logger    *slog.Logger
}

// Replica keeps this instance's catalog, feeds it from the durable
// stream, exchanges it with peers and serves reads. It is safe for
// concurrent use.
type Replica struct {
	cfg    Config
	opts   Options
	log    *slog.Logger
	client *http.Client
	kick   chan struct{} // a local change: start a round soon
	met    metrics

	// mu guards the fields below it. Lock order: mu before peersMu.
	mu      sync.RWMutex
	state   *State
	applied uint64                     // last journal seq ingested
	staged  map[string]*staging        // chunked transfers in progress, by sender
	pending []pendingDelta             // deltas waiting for their base
	waiters map[chan struct{}]struct{} // closed when the summary grows
	dirty   bool                       // changed since the last save

	peersMu sync.Mutex
	peers   map[string]*peer // by URL
}

// staging holds the chunks of a full transfer until its last one: they
// are visible to eventual reads only.
type staging struct {
	changes []Change
	summary VersionVector
	touched time.Time
}

// New returns a Replica with the catalog saved in opts.Dir, if any.
func New(opts Options) (*Replica, error) {
	if err := opts.Config.Validate(); err != nil {
		return nil, err
	}
	if opts.Open == nil || opts.Resolve == nil {
		return nil, fmt.Errorf("%w: Open and Resolve are required", ErrConfig)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Start == 0 {
		opts.Start = 1
	}
	cfg := opts.Config.withDefaults()
	tr := opts.Transport
	if tr == nil {
		t, err := transport(cfg.TLS)
		if err != nil {
			return nil, err
		}
		tr = t
	}
	r := &Replica{
		cfg: cfg, opts: opts, log: opts.Logger,
		client:  &http.Client{Transport: tr, Timeout: cfg.Timeout},
		kick:    make(chan struct{}, 1),
		state:   NewState(),
		staged:  make(map[string]*staging),
		waiters: make(map[chan struct{}]struct{}),
		peers:   make(map[string]*peer),
	}
	r.met.init()
	for _, u := range cfg.Peers {
		r.peers[u] = &peer{url: u, static: true}
	}
	if opts.Dir != "" {
		if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
			return nil, fmt.Errorf("replica: %w", err)
		}
		if err := r.load(); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// Name is this instance's name in version vectors.
func (r *Replica) Name() string { return r.cfg.Name }

// Run ingests the durable stream and syncs with peers until ctx is done,
// then saves the catalog. It returns ctx's error, or the first error that
// stops ingestion.
func (r *Replica) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 1)
	wg.Go(func() {
		if err := r.ingest(ctx); err != nil && ctx.Err() == nil {
			errc <- err
			cancel()
		}
	})
	wg.Go(func() { r.syncLoop(ctx) })
	wg.Go(func() { r.saveLoop(ctx) })
	wg.Wait()
	saveErr := r.save()
	select {
	case err := <-errc:
		return err
	default:
	}
	if saveErr != nil {
		r.log.Error("sync: save catalog", "err", saveErr)
	}
	return ctx.Err()
}

// ingest reads the durable stream from after the checkpoint and turns fs.*
// events on named trees into local changes.
func (r *Replica) ingest(ctx context.Context) error {
	r.mu.RLock()
	from := r.applied + 1
	r.mu.RUnlock()
	if from == 1 {
		from = r.opts.Start
	} else if r.opts.LastSeq != nil && from > r.opts.LastSeq()+1 {
		// The journal restarted below the checkpoint: its seqs would name
		// new changes with dots peers already hold for others.
		return fmt.Errorf("%w: the journal ends at seq %d, before the catalog's checkpoint %d (was the data directory reset?): remove %s and choose a new sync.name",
			ErrConfig, r.opts.LastSeq(), from-1, filepath.Join(r.opts.Dir, snapshotFile))
	}
	src, err := r.opts.Open(from)
	if err != nil {
		return fmt.Errorf("replica: open stream at %d: %w", from, err)
	}
	defer src.Close()
	var ev event.Event
	for {
		if err := src.Next(ctx, &ev); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("replica: read stream: %w", err)
		}
		changed := r.applyEvent(&ev)
		if changed {
			select {
			case r.kick <- struct{}{}:
			default:
			}
		}
	}
}

// applyEvent records ev's effect on the catalog and reports whether it
// made a change.
func (r *Replica) applyEvent(ev *event.Event) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ev.Seq <= r.applied {
		return false
	}
	r.applied = ev.Seq
	r.dirty = true
	defer r.notifyLocked() // strong reads wait for applied
	if len(ev.Type) < 3 || ev.Type[:3] != "fs." || (ev.Boundary != event.BoundaryKernel && ev.Boundary != event.BoundaryFUSE) {
		return false
	}
	me := r.cfg.Name
	base := File{MTime: ev.Time.UnixNano(), Instance: me, Seq: ev.Seq, HLC: ev.HLC}
	if ev.Context.Has(event.HasUID) {
		base.UID = ev.Context.UID
	}
	changed := false
	put := func(abs string, f File) {
		tree, rel, ok := r.opts.Resolve(abs)
		if !ok || !validPath(rel) || !ValidName(tree) {
			return
		}
		if _, ok := r.state.Local(me, ev.Seq, Key{tree, rel}, f); ok {
			changed = true
			r.met.local.Add(1)
		}
	}
	prev := func(abs string) (File, bool) {
		tree, rel, ok := r.opts.Resolve(abs)
		if !ok {
			return File{}, false
		}
		vs := r.state.Get(Key{tree, rel})
		if len(vs) == 1 && !vs[0].Deleted {
			return vs[0].File, true
		}
		return File{}, false
	}
	hash, _ := ev.Attr("hash")
	switch ev.Type {
	case event.TypeDelete, event.TypeRmdir:
		f := base
		f.Deleted = true
		put(ev.Subject, f)
	case event.TypeRename:
		old, had := prev(ev.Context.OldPath)
		if ev.Context.OldPath != "" {
			gone := base
			gone.Deleted = true
			put(ev.Context.OldPath, gone)
		}
		f := base
		if had {
			f.Size, f.Hash, f.Dir = old.Size, old.Hash, old.Dir
		}
		if ev.Context.Has(event.HasSize) {
			f.Size = ev.Context.Size
		}
		if hash != "" {
			f.Hash = hash
		}
		put(ev.Subject, f)
	case event.TypeCreate, event.TypeWrite, event.TypeAttrib, event.TypeMkdir, event.TypeSymlink, event.TypeLink:
		f := base
		old, had := prev(ev.Subject)
		if had && ev.Type == event.TypeAttrib {
			f.Size, f.Hash = old.Size, old.Hash // metadata only: content unchanged
		}
		f.Dir = ev.Type == event.TypeMkdir || (had && old.Dir && ev.Type == event.TypeAttrib)
		if ev.Context.Has(event.HasMode) && ev.Context.Mode&0o170000 == 0o040000 {
			f.Dir = true
		}
		if ev.Context.Has(event.HasSize) {
			f.Size = ev.Context.Size
		}
		if hash != "" {
			f.Hash = hash
		}
		put(ev.Subject, f)
	default:
		return false
	}
	return changed
}

// notifyLocked wakes the readers waiting for the summary to grow.
func (r *Replica) notifyLocked() {
	for c := range r.waiters {
		close(c)
		delete(r.waiters, c)
	}
}

// Applied is the last journal seq the catalog has ingested.
func (r *Replica) Applied() uint64 {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.applied
}

// Summary returns the catalog's summary vector.
func (r *Replica) Summary() VersionVector {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.state.Summary()
}

const snapshotFile = "catalog"

// save writes the catalog and its checkpoint to Dir if it changed: an
// 8-byte journal seq, then the whole state as one sealed message.
func (r *Replica) save() error {
	if r.opts.Dir == "" {
		return nil
	}
	r.mu.Lock()
	if !r.dirty {
		r.mu.Unlock()
		return nil
	}
	d := r.state.Delta(nil)
	applied := r.applied
	r.dirty = false
	r.mu.Unlock()
	m := message{From: r.cfg.Name, Summary: d.Summary, Changes: d.Changes, Peers: r.peerURLs()}
	b := binary.BigEndian.AppendUint64(nil, applied)
	b = append(b, m.seal()...)
	if err := atomicfile.Write(filepath.Join(r.opts.Dir, snapshotFile), b, 0o600); err != nil {
		r.mu.Lock()
		r.dirty = true
		r.mu.Unlock()
		return fmt.Errorf("replica: save: %w", err)
	}
	r.met.saves.Add(1)
	return nil
}

// load reads the saved catalog, if there is one.
func (r *Replica) load() error {
	b, err := os.ReadFile(filepath.Join(r.opts.Dir, snapshotFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("replica: load: %w", err)
	}
	if len(b) < 8 {
		return fmt.Errorf("replica: load: %w: short file", ErrBadDelta)
	}
	m, err := open(b[8:])
	if err != nil {
		return fmt.Errorf("replica: load: %w", err)
	}
	if m.From != r.cfg.Name {
		return fmt.Errorf("%w: the saved catalog is instance %q's, not %q (sync.name changed? remove %s to rebuild)", ErrConfig, m.From, r.cfg.Name, filepath.Join(r.opts.Dir, snapshotFile))
	}
	r.state.Merge(Delta{Changes: m.Changes, Summary: m.Summary})
	r.applied = binary.BigEndian.Uint64(b[:8])
	for _, u := range m.Peers {
		if _, ok := r.peers[u]; !ok && r.cfg.gossipOK(u) {
			r.peers[u] = &peer{url: u}
		}
	}
	return nil
}

func (r *Replica) saveLoop(ctx context.Context) {
	t := time.NewTicker(r.cfg.Checkpoint)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := r.save(); err != nil {
				r.log.Warn("sync: save catalog", "err", err)
			}
			r.expireStaged()
		}
	}
}

// expireStaged drops chunked transfers that stopped half way.
func (r *Replica) expireStaged() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, s := range r.staged {
		if time.Since(s.touched) > 2*r.cfg.Timeout {
			delete(r.staged, k)
		}
	}
	r.pending = slices.DeleteFunc(r.pending, func(p pendingDelta) bool { return time.Since(p.at) > 2*r.cfg.Timeout })
}
