package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	"github.com/semprop/semprop/event"
)

// request is one Sequence call: its events stay together in one entry, so
// they get consecutive seqs.
type request struct {
	evs  []*event.Event
	done chan struct{} // closed when first/index/err are set

	first uint64 // seq of evs[0]
	index uint64 // log index of the entry that carried them
	err   error
}

func (rq *request) finish(first, index uint64, err error) {
	rq.first, rq.index, rq.err = first, index, err
	close(rq.done)
}

// flight is one batch on its way: a raft apply on the leader or a forward
// to the leader.
type flight struct {
	reqs  []*request
	nonce uint64
	fut   raft.ApplyFuture
}

// batcher groups concurrent Sequence calls into log entries of up to
// MaxBatch events, waiting at most MaxDelay for a batch to fill. On the
// leader it applies them through raft (many in flight, completed in order
// by complete); on a follower it forwards them to the leader over HTTP.
type batcher struct {
	n        *Node
	in       chan *request
	inflight chan *flight
	fwdSem   chan struct{} // bounds concurrent forwards
}

func newBatcher(n *Node) *batcher {
	return &batcher{
		n:        n,
		in:       make(chan *request, 1024),
		inflight: make(chan *flight, 256),
		fwdSem:   make(chan struct{}, 32),
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
		reqs = append(reqs[:0], first)
		count := len(first.evs)
		deadline := false
		if b.n.cfg.MaxDelay > 0 {
			timer.Reset(b.n.cfg.MaxDelay)
		}
	fill:
		for count < b.n.cfg.MaxBatch {
			select {
			case rq := <-b.in:
				if count+len(rq.evs) > b.n.cfg.MaxBatch {
					b.flush(ctx, reqs)
					reqs, count = append([]*request(nil), rq), len(rq.evs)
					continue
				}
				reqs = append(reqs, rq)
				count += len(rq.evs)
				continue
			default:
			}
			if b.n.cfg.MaxDelay <= 0 || deadline {
				break
			}
			select {
			case rq := <-b.in:
				if count+len(rq.evs) > b.n.cfg.MaxBatch {
					b.flush(ctx, reqs)
					reqs, count = append([]*request(nil), rq), len(rq.evs)
					continue
				}
				reqs = append(reqs, rq)
				count += len(rq.evs)
			case <-timer.C:
				deadline = true
				break fill
			case <-ctx.Done():
				b.flush(ctx, reqs)
				return
			}
		}
		if !deadline && b.n.cfg.MaxDelay > 0 {
			timer.Stop()
		}
		b.flush(ctx, reqs)
		reqs = reqs[:0]
	}
}

// flush sends one batch: raft apply on the leader, forward elsewhere.
func (b *batcher) flush(ctx context.Context, reqs []*request) {
	if len(reqs) == 0 {
		return
	}
	reqs = append([]*request(nil), reqs...)
	n := b.n
	if n.r.State() != raft.Leader {
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
	nonce := n.nonce.Add(1)
	entry, err := appendBatch(make([]byte, 0, 64+len(evs)*160), nonce, n.clock.Now(), evs)
	if err != nil {
		failAll(reqs, fmt.Errorf("cluster: encode batch: %w", err))
		return
	}
	n.addPending(nonce, evs)
	fut := n.r.Apply(entry, n.cfg.ForwardTimeout)
	select {
	case b.inflight <- &flight{reqs: reqs, nonce: nonce, fut: fut}:
	case <-ctx.Done():
		n.takePending(nonce)
		failAll(reqs, ErrClosed)
	}
}

// complete waits for applies in order and answers their requests.
func (b *batcher) complete() {
	for fl := range b.inflight {
		// raft answers every future it accepted, but never one stranded by
		// a shutdown: do not let Close wait for that.
		errc := make(chan error, 1)
		go func() { errc <- fl.fut.Error() }()
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
		var res applyResult
		if err == nil {
			res, _ = fl.fut.Response().(applyResult)
			err = res.err
		} else {
			err = raftErr(err)
		}
		b.n.takePending(fl.nonce)
		first := res.first
		for _, rq := range fl.reqs {
			if err != nil {
				rq.finish(0, 0, err)
				continue
			}
			rq.finish(first, fl.fut.Index(), nil)
			first += uint64(len(rq.evs))
		}
	}
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
