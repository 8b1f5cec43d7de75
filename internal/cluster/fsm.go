package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/journal"
)

// applyResult is the FSM's response to a batch entry: the seq of its first
// event, or why it could not be applied.
type applyResult struct {
	first uint64
	err   error
}

// fsm applies committed entries to the node's journal. Apply, ApplyBatch,
// Snapshot and Restore run on raft's FSM goroutine, one at a time; the
// fields marked "FSM goroutine" are touched only there.
type fsm struct {
	n *Node
	j *journal.Journal

	next    uint64 // FSM goroutine: seq the next batch starts at
	scratch batch  // FSM goroutine

	applied  atomic.Uint64         // index of the last entry the FSM applied
	failed   atomic.Pointer[error] // sticky: the journal failed, nothing more is applied
	appliedC chan struct{}         // closed and replaced when applied advances; under chMu
	chMu     sync.Mutex

	// mu guards members.
	mu      sync.Mutex
	members map[string]Member
}

var (
	_ raft.BatchingFSM = (*fsm)(nil)
	_ raft.FSMSnapshot = (*fsmSnapshot)(nil)
)

func newFSM(n *Node, j *journal.Journal) *fsm {
	return &fsm{n: n, j: j, next: 1, members: make(map[string]Member), appliedC: make(chan struct{})}
}

// Apply implements raft.FSM.
func (f *fsm) Apply(l *raft.Log) any {
	return f.ApplyBatch([]*raft.Log{l})[0]
}

// ApplyBatch implements raft.BatchingFSM.
func (f *fsm) ApplyBatch(logs []*raft.Log) []any {
	out := make([]any, len(logs))
	for i, l := range logs {
		if l.Type == raft.LogCommand {
			out[i] = f.applyCommand(l)
		}
	}
	if len(logs) > 0 {
		f.setApplied(logs[len(logs)-1].Index)
	}
	return out
}

func (f *fsm) setApplied(idx uint64) {
	f.applied.Store(idx)
	f.chMu.Lock()
	close(f.appliedC)
	f.appliedC = make(chan struct{})
	f.chMu.Unlock()
}

// changed returns a channel closed when the applied index next advances.
func (f *fsm) changed() <-chan struct{} {
	f.chMu.Lock()
	defer f.chMu.Unlock()
	return f.appliedC
}

func (f *fsm) applyCommand(l *raft.Log) any {
	if len(l.Data) == 0 {
		return applyResult{err: fmt.Errorf("%w: empty", ErrBadEntry)}
	}
	switch l.Data[0] {
	case kindBatch:
		return f.applyBatch(l.Data)
	case kindMemberSet, kindMemberDel:
		var m Member
		if err := json.Unmarshal(l.Data[1:], &m); err != nil {
			return applyResult{err: fmt.Errorf("%w: member: %v", ErrBadEntry, err)}
		}
		f.mu.Lock()
		if l.Data[0] == kindMemberSet {
			f.members[m.ID] = m
		} else {
			delete(f.members, m.ID)
		}
		f.mu.Unlock()
		return applyResult{}
	}
	return applyResult{err: fmt.Errorf("%w: kind %d", ErrBadEntry, l.Data[0])}
}

func (f *fsm) applyBatch(data []byte) applyResult {
	b := &f.scratch
	if err := decodeBatch(data, b); err != nil {
		// Every node refuses the same bytes the same way, so seqs stay aligned.
		return applyResult{err: err}
	}
	first := f.next
	n := uint64(len(b.raw))
	f.next += n
	orig := f.n.takePending(b.nonce)
	if orig != nil && uint64(len(orig)) != n {
		// Not this node's batch: another node's entry that bears the
		// nonce of one pending here (nonces start at random per node).
		f.n.log.Warn("cluster: entry nonce matches a pending batch of another size", "nonce", b.nonce, "entry", n, "pending", len(orig))
		f.n.addPending(b.nonce, orig)
		orig = nil
	}
	for i, ev := range orig {
		ev.Seq = first + uint64(i)
	}
	if _, err := f.n.clock.Update(b.hlc); err != nil {
		f.n.log.Debug("cluster: leader clock ahead", "err", err)
	}
	if e := f.failed.Load(); e != nil {
		return applyResult{err: *e}
	}
	last := f.j.LastSeq()
	if last+1 < first {
		// The journal lacks records before this batch (it lost unsynced
		// records, or a snapshot was restored without them): fetch them.
		if err := f.n.fillJournal(first-1, f.membersList()); err != nil {
			f.fail(err)
			return applyResult{err: err}
		}
		last = f.j.LastSeq()
	}
	if last >= first+n-1 {
		return applyResult{first: first} // already in the journal (replay after restart)
	}
	skip := uint64(0)
	if last >= first {
		skip = last + 1 - first
	}
	raw := b.raw[skip:]
	got, err := f.writeJournal(raw, first+skip)
	if err != nil {
		err = fmt.Errorf("cluster: journal: %w", err)
		f.fail(err)
		return applyResult{err: err}
	}
	_ = got
	if f.n.deliver != nil {
		if orig != nil {
			f.n.deliver(orig[skip:])
		} else if f.n.cfg.DeliverWanted == nil || f.n.cfg.DeliverWanted() {
			evs := make([]*event.Event, len(raw))
			store := make([]event.Event, len(raw))
			for i, r := range raw {
				ev := &store[i]
				if err := ev.UnmarshalBinary(r); err != nil {
					f.n.log.Error("cluster: decode committed event", "err", err)
					evs = evs[:i]
					break
				}
				ev.Seq = first + skip + uint64(i)
				evs[i] = ev
			}
			f.n.deliver(evs)
		}
	}
	return applyResult{first: first}
}

// writeJournal appends raw (the records of seqs from first on) to the
// journal. A full disk is not a failure of the node: the journal refuses
// the write without using a seq and recovers on its own once space is
// freed, so the FSM waits for that (the log stays committed; acks wait
// for the apply) and writes again. Close ends the wait.
func (f *fsm) writeJournal(raw [][]byte, first uint64) (uint64, error) {
	for {
		got, err := f.j.Write(len(raw), func(i int, seq uint64, dst []byte) ([]byte, error) {
			if want := first + uint64(i); seq != want {
				return nil, fmt.Errorf("journal assigned seq %d, log order says %d", seq, want)
			}
			return withSeq(dst, raw[i], seq), nil
		})
		if !errors.Is(err, journal.ErrNoSpace) {
			return got, err
		}
		f.n.log.Warn("cluster: journal disk full; applying waits for space", "seq", first)
		for errors.Is(f.j.Err(), journal.ErrNoSpace) {
			select {
			case <-f.j.Changed():
			case <-time.After(time.Second):
			case <-f.n.ctx.Done():
				return 0, err
			}
		}
	}
}

func (f *fsm) fail(err error) {
	if f.failed.CompareAndSwap(nil, &err) {
		f.n.log.Error("cluster: FSM stopped applying", "err", err)
	}
}

func (f *fsm) membersList() []Member {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]Member, 0, len(f.members))
	for _, m := range f.members {
		out = append(out, m)
	}
	return out
}

func (f *fsm) member(id string) (Member, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	m, ok := f.members[id]
	return m, ok
}

// snapshotState is what a snapshot holds: the journal position reached by
// the entries it covers and the membership metadata. The journal records
// themselves are not in it: a node restoring it fetches the records it lacks
// from a peer's journal (Node.fillJournal).
type snapshotState struct {
	Pos     uint64   `json:"pos"`     // last seq written by the entries covered
	Applied uint64   `json:"applied"` // last entry index the FSM applied
	Members []Member `json:"members"`
}

type fsmSnapshot struct {
	st snapshotState
	j  *journal.Journal
}

// Snapshot implements raft.FSM.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	if e := f.failed.Load(); e != nil {
		return nil, *e
	}
	return &fsmSnapshot{
		st: snapshotState{Pos: f.next - 1, Applied: f.applied.Load(), Members: f.membersList()},
		j:  f.j,
	}, nil
}

// Persist implements raft.FSMSnapshot. It waits until the journal holds the
// snapshot's position and fsyncs it (whatever the journal's policy: a node's
// journal may fsync only every interval): once raft compacts the log
// behind a snapshot, the journal is the only local copy of those events.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := s.j.WaitDurable(ctx, s.st.Pos)
	if err == nil {
		err = s.j.Sync(ctx)
	}
	if err == nil {
		err = json.NewEncoder(sink).Encode(s.st)
	}
	if err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("cluster: persist snapshot: %w", err)
	}
	return sink.Close()
}

// Release implements raft.FSMSnapshot.
func (s *fsmSnapshot) Release() {}

// Restore implements raft.FSM: it adopts the snapshot's membership and
// journal position, fetching the journal records it lacks from peers.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var st snapshotState
	if err := json.NewDecoder(rc).Decode(&st); err != nil {
		return fmt.Errorf("cluster: restore snapshot: %w", err)
	}
	f.mu.Lock()
	f.members = make(map[string]Member, len(st.Members))
	for _, m := range st.Members {
		f.members[m.ID] = m
	}
	f.mu.Unlock()
	if f.j.LastSeq() < st.Pos {
		if err := f.n.fillJournal(st.Pos, st.Members); err != nil {
			return fmt.Errorf("cluster: restore snapshot: %w", err)
		}
	}
	f.next = st.Pos + 1
	f.n.restores.Add(1)
	f.setApplied(st.Applied)
	return nil
}

var errNoPeer = errors.New("no peer could supply the journal records")
