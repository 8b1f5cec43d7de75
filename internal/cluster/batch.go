package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/propagate"
)

// request is one Sequence call: its events stay together in one entry, so
// they get consecutive seqs (but for copies idempotent ingest answers with
// their first copy's seq).
type request struct {
	evs  []*event.Event
	done chan struct{} // closed when first/seqs/index/err are set

	first uint64   // seq of evs[0], when seqs is nil
	seqs  []uint64 // each event's seq, when some were copies
	index uint64   // log index at or after which every event is applied
	err   error
}

func (rq *request) finish(first, index uint64, err error) {
	rq.first, rq.index, rq.err = first, index, err
	close(rq.done)
}

// finishSeqs answers rq with a seq per event.
func (rq *request) finishSeqs(seqs []uint64, index uint64) {
	rq.seqs, rq.index = seqs, index
	close(rq.done)
}

// setSeqs gives each event of an answered request its seq.
func (rq *request) setSeqs() {
	for i, ev := range rq.evs {
		if rq.seqs != nil {
			ev.Seq = rq.seqs[i]
		} else {
			ev.Seq = rq.first + uint64(i)
		}
	}
}

// answer answers the requests of one batch in order: from first on, or
// from seqs (one per event of reqs) when it is not nil.
func answer(reqs []*request, first uint64, seqs []uint64, index uint64) {
	for _, rq := range reqs {
		if seqs == nil {
			rq.finish(first, index, nil)
			first += uint64(len(rq.evs))
			continue
		}
		rq.finishSeqs(seqs[:len(rq.evs):len(rq.evs)], index)
		seqs = seqs[len(rq.evs):]
	}
}

// flight is one batch on its way: a raft apply on the leader or a forward
// to the leader.
type flight struct {
	reqs  []*request
	nonce uint64
	fut   raft.ApplyFuture // nil: every event was a copy, nothing to commit

	// copies is nil when no event of reqs is a copy; else, for each event
	// of reqs in order, where its first copy is. keys are the fresh
	// events' keys while they are in the batcher's pend.
	copies []copyRef
	keys   [][2]uint64

	first uint64 // set by complete: seq of the entry's first event
	err   error  // set by complete
	slot  bool   // holds one of the batcher's slots until complete
}

// copyRef places an event the leader judged: fresh (dup false), a copy of
// a sequenced event (seq), or a copy of the idx-th fresh event of flight fl
// (this one or one before it).
type copyRef struct {
	dup bool
	seq uint64
	fl  *flight
	idx int
}

// batcher groups concurrent Sequence calls into log entries of up to
// MaxBatch events, waiting at most MaxDelay for a batch to fill. On the
// leader it applies them through raft (many in flight, completed in order
// by complete); on a follower it forwards them to the leader over HTTP.
type batcher struct {
	n        *Node
	in       chan *request
	inflight chan *flight
	slots    chan struct{} // the leader's entries in flight (Config.MaxInflight)
	fwdSem   chan struct{} // bounds concurrent forwards
	term     uint64        // run goroutine: the term whose barrier was applied

	// pendMu guards pend: the keys of the fresh events of flights not yet
	// completed (idempotent ingest on the leader).
	pendMu sync.Mutex
	pend   map[[2]uint64]copyRef
}

func newBatcher(n *Node) *batcher {
	return &batcher{
		n:        n,
		in:       make(chan *request, 1024),
		inflight: make(chan *flight, 256),
		slots:    make(chan struct{}, n.cfg.MaxInflight),
		fwdSem:   make(chan struct{}, 32),
		pend:     make(map[[2]uint64]copyRef),
	}
}

func (b *batcher) submit(ctx context.Context, rq *request) error {
	select {
	case b.in <- rq:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-b.n.ctx.Done():
		return ErrClosed
	}
}

// run owns the batching loop and the completion goroutine; it returns when
// ctx ends, failing what is still queued.
func (b *batcher) run(ctx context.Context) {
	done := make(chan struct{})
	go func() { b.complete(); close(done) }()
	defer func() {
		close(b.inflight)
		<-done
		for {
			select {
			case rq := <-b.in:
				rq.finish(0, 0, ErrClosed)
			default:
				return
			}
		}
	}()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var reqs []*request
	for {
		var first *request
		select {
		case first = <-b.in:
		case <-ctx.Done():
			return
		}
		// On the leader, wait for an entry in flight to complete: what
		// queues meanwhile joins this batch.
		slot := b.acquire(ctx)
		reqs = append(reqs[:0], first)
		count := len(first.evs)
		// add puts rq in the batch, or flushes the batch and starts the
		// next with rq when rq would overfill it.
		add := func(rq *request) {
			if count+len(rq.evs) > b.n.cfg.MaxBatch {
				b.flush(ctx, reqs, slot)
				slot = b.acquire(ctx)
				reqs, count = append([]*request(nil), rq), len(rq.evs)
				return
			}
			reqs = append(reqs, rq)
			count += len(rq.evs)
		}
		deadline := false
		if b.n.cfg.MaxDelay > 0 {
			timer.Reset(b.n.cfg.MaxDelay)
		}
	fill:
		for count < b.n.cfg.MaxBatch {
			select {
			case rq := <-b.in:
				add(rq)
				continue
			default:
			}
			if b.n.cfg.MaxDelay <= 0 || deadline {
				break
			}
			select {
			case rq := <-b.in:
				add(rq)
			case <-timer.C:
				deadline = true
				break fill
			case <-ctx.Done():
				b.flush(ctx, reqs, slot)
				return
			}
		}
		if !deadline && b.n.cfg.MaxDelay > 0 {
			timer.Stop()
		}
		b.flush(ctx, reqs, slot)
		reqs = reqs[:0]
	}
}

// acquire takes a slot for the next entry when this node leads (waiting
// for one of the entries in flight to complete), and reports whether it
// did. A follower forwards without one.
func (b *batcher) acquire(ctx context.Context) bool {
	if b.n.r.State() != raft.Leader {
		return false
	}
	select {
	case b.slots <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

// release gives back a slot taken by acquire.
func (b *batcher) release(slot bool) {
	if slot {
		<-b.slots
	}
}

// flush sends one batch: raft apply on the leader, forward elsewhere.
// slot says whether the batch holds a slot; the flight keeps it until it
// completes, and every other outcome gives it back.
func (b *batcher) flush(ctx context.Context, reqs []*request, slot bool) {
	if len(reqs) == 0 {
		b.release(slot)
		return
	}
	reqs = append([]*request(nil), reqs...)
	n := b.n
	if n.r.State() != raft.Leader {
		b.release(slot)
		select {
		case b.fwdSem <- struct{}{}:
		case <-ctx.Done():
			failAll(reqs, ErrClosed)
			return
		}
		n.wg.Go(func() {
			defer func() { <-b.fwdSem }()
			n.forwardBatch(ctx, reqs)
		})
		return
	}
	var evs []*event.Event
	if len(reqs) == 1 {
		evs = reqs[0].evs
	} else {
		for _, rq := range reqs {
			evs = append(evs, rq.evs...)
		}
	}
	fl := &flight{reqs: reqs, slot: slot}
	if w := n.window.Load(); w != nil {
		if t := n.r.CurrentTerm(); t != b.term {
			// A new term: the window must know every entry committed
			// before it, so apply them first.
			if err := n.r.Barrier(n.cfg.ForwardTimeout).Error(); err != nil {
				b.release(slot)
				failAll(reqs, raftErr(err))
				return
			}
			b.term = t
		}
		evs = b.judge(w.w, fl, evs)
	}
	if len(evs) > 0 {
		fl.nonce = n.nonce.Add(1)
		entry, err := appendBatch(make([]byte, 0, 64+len(evs)*160), fl.nonce, n.clock.Now(), evs)
		if err != nil {
			b.forget(fl)
			b.release(slot)
			failAll(reqs, fmt.Errorf("cluster: encode batch: %w", err))
			return
		}
		n.addPending(fl.nonce, evs)
		fl.fut = n.r.Apply(entry, n.cfg.ForwardTimeout)
	}
	select {
	case b.inflight <- fl:
	case <-ctx.Done():
		if fl.fut != nil {
			n.takePending(fl.nonce)
		}
		b.forget(fl)
		b.release(slot)
		failAll(reqs, ErrClosed)
	}
}

// judge returns the events of evs that are not copies of an event the
// window remembers, of one on its way in a flight, or of one before them
// in evs, and notes in fl where the copies' first copies are.
func (b *batcher) judge(w propagate.Window, fl *flight, evs []*event.Event) []*event.Event {
	fresh := evs
	copies := 0
	b.pendMu.Lock()
	defer b.pendMu.Unlock()
	keys := make([][2]uint64, 0, len(evs))
	for i, ev := range evs {
		k := w.Key(ev)
		ref, ok := b.pend[k]
		if !ok {
			if seq, seen := w.Lookup(k); seen {
				ref, ok = copyRef{dup: true, seq: seq}, true
			}
		}
		if !ok {
			b.pend[k] = copyRef{dup: true, fl: fl, idx: len(keys)}
			keys = append(keys, k)
			if copies > 0 {
				fresh = append(fresh, ev)
			}
			continue
		}
		if copies == 0 {
			fl.copies = make([]copyRef, len(evs))
			fresh = append(make([]*event.Event, 0, len(evs)), evs[:i]...)
		}
		fl.copies[i] = ref
		copies++
	}
	fl.keys = keys
	if copies > 0 {
		w.Duplicates(copies)
	}
	return fresh
}

// forget takes fl's fresh events out of pend: they are applied (the window
// has them) or failed.
func (b *batcher) forget(fl *flight) {
	if len(fl.keys) == 0 {
		return
	}
	b.pendMu.Lock()
	for _, k := range fl.keys {
		if ref := b.pend[k]; ref.fl == fl {
			delete(b.pend, k)
		}
	}
	b.pendMu.Unlock()
}

// complete waits for applies in order, answers their requests and gives
// their slots back.
func (b *batcher) complete() {
	for fl := range b.inflight {
		b.finish(fl)
		b.release(fl.slot)
	}
}

// finish waits for fl's apply and answers its requests.
func (b *batcher) finish(fl *flight) {
	var index uint64
	if fl.fut == nil {
		// Copies only: their first copies are applied here, or in a
		// flight completed before this one.
		index = b.n.fsm.applied.Load()
	} else {
		fl.first, fl.err = b.wait(fl.fut)
		index = fl.fut.Index()
		b.n.takePending(fl.nonce)
	}
	b.forget(fl)
	if fl.err != nil {
		failAll(fl.reqs, fl.err)
		return
	}
	if fl.copies == nil {
		answer(fl.reqs, fl.first, nil, index)
		return
	}
	seqs := make([]uint64, len(fl.copies))
	next := fl.first
	var err error
	for i, c := range fl.copies {
		switch {
		case !c.dup:
			seqs[i] = next
			next++
		case c.fl == nil:
			seqs[i] = c.seq
		case c.fl.err != nil:
			err = c.fl.err
		default:
			seqs[i] = c.fl.first + uint64(c.idx)
		}
	}
	if err != nil {
		failAll(fl.reqs, err)
		return
	}
	answer(fl.reqs, 0, seqs, index)
}

// wait returns the outcome of an apply: the seq of its first event.
func (b *batcher) wait(fut raft.ApplyFuture) (uint64, error) {
	// raft answers every future it accepted, but never one stranded by a
	// shutdown: do not let Close wait for that.
	errc := make(chan error, 1)
	go func() { errc <- fut.Error() }()
	var err error
	select {
	case err = <-errc:
	case <-b.n.ctx.Done():
		select {
		case err = <-errc:
		case <-time.After(b.n.cfg.ForwardTimeout):
			err = ErrClosed
		}
	}
	if err != nil {
		return 0, raftErr(err)
	}
	res, _ := fut.Response().(applyResult)
	return res.first, res.err
}

func failAll(reqs []*request, err error) {
	for _, rq := range reqs {
		rq.finish(0, 0, err)
	}
}

// raftErr maps raft's errors to the package's: anything that means "no
// leader with a quorum" wraps ErrNoQuorum.
func raftErr(err error) error {
	switch {
	case errors.Is(err, raft.ErrLeadershipLost):
		return fmt.Errorf("%w: leadership lost before commit (outcome unknown): %v", ErrNoQuorum, err)
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress),
		errors.Is(err, raft.ErrEnqueueTimeout), errors.Is(err, raft.ErrAbortedByRestore):
		return fmt.Errorf("%w: %v", ErrNoQuorum, err)
	case errors.Is(err, raft.ErrRaftShutdown):
		return ErrClosed
	}
	return fmt.Errorf("cluster: %w", err)
}
