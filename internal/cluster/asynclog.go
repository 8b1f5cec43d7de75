package cluster

import (
	"errors"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"
	raftwal "github.com/hashicorp/raft-wal"
)

// asyncLog is the Raft log store: raft-wal, written by the leader without
// waiting. The leader hands it each group of new entries
// (StoreLogsAsync) and sends them to its followers at once; a writer
// goroutine appends the groups waiting, several in one raft-wal append
// (one fsync), and reports each group durable in order, which is when the
// leader counts its own copy towards the quorum. An entry is therefore
// committed only once a majority holds it durably, as before, but the
// leader's fsync and its followers' run at the same time instead of one
// after the other (the Raft thesis, section 10.2.1).
//
// A follower hands its appends over the same way (StoreLogsAsync, with no
// entries when all were there already) and answers the leader from done:
// while one group is being fsynced, the next AppendEntries is taken in, and
// the groups that arrived meanwhile share the next fsync.
//
// Entries handed over and not yet durable are read from memory (GetLog,
// LastIndex), so that replication can send them. Every other write and
// DeleteRange first waits for them, so the store sees operations in the
// order raft made them. A failed asynchronous write fails every later
// operation: the leader steps down, and the node's log is not to be
// trusted until a restart re-reads what raft-wal holds.
type asyncLog struct {
	*raftwal.WAL // the stable store, and what is not overridden below

	mu      sync.Mutex
	cond    *sync.Cond  // signalled when pending shrinks or err is set
	pending []*raft.Log // handed over, not yet durable, by index
	dones   []asyncDone // one per StoreLogsAsync call with entries pending
	err     error       // sticky: a failed write
	closed  bool
	kick    chan struct{} // wakes the writer
	stopped chan struct{} // closed when the writer returns

	// recent holds the entries appended last, at index % len: raft
	// reads each entry back soon after it is stored (a follower's FSM
	// applies it, the leader sends it), which would otherwise be a pread
	// and a decode each (a seventh of a cluster's CPU).
	recent      [recentLogs]*raft.Log
	recentBytes int // of the Data of recent's entries, at most recentMax

	// gate, set by tests (while the log runs), runs before every append
	// to raft-wal.
	gate atomic.Pointer[func()]
}

const (
	recentLogs = 256
	recentMax  = 32 << 20
)

type asyncDone struct {
	last uint64 // the call's last index
	done func(error)
}

var errLogClosed = errors.New("cluster: raft log closed")

var _ raft.AsyncLogStore = (*asyncLog)(nil)

func newAsyncLog(w *raftwal.WAL) *asyncLog {
	l := &asyncLog{WAL: w, kick: make(chan struct{}, 1), stopped: make(chan struct{})}
	l.cond = sync.NewCond(&l.mu)
	go l.write()
	return l
}

// StoreLogsAsync implements raft.AsyncLogStore.
func (l *asyncLog) StoreLogsAsync(logs []*raft.Log, done func(error)) {
	l.mu.Lock()
	if err := l.failed(); err != nil {
		l.mu.Unlock()
		done(err)
		return
	}
	if len(logs) == 0 {
		if n := len(l.pending); n > 0 {
			// A barrier: done once the writes before it are durable.
			l.dones = append(l.dones, asyncDone{last: l.pending[n-1].Index, done: done})
			l.mu.Unlock()
			return
		}
		l.mu.Unlock()
		done(nil)
		return
	}
	l.pending = append(l.pending, logs...)
	l.dones = append(l.dones, asyncDone{last: logs[len(logs)-1].Index, done: done})
	l.mu.Unlock()
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// failed is the error every operation returns now, if any (l.mu held).
func (l *asyncLog) failed() error {
	if l.err != nil {
		return l.err
	}
	if l.closed {
		return errLogClosed
	}
	return nil
}

// write appends what is pending, all of it in one raft-wal call, until
// the log is closed and nothing is pending.
func (l *asyncLog) write() {
	defer close(l.stopped)
	for {
		l.mu.Lock()
		for len(l.pending) == 0 && !l.closed {
			l.mu.Unlock()
			<-l.kick
			l.mu.Lock()
		}
		if len(l.pending) == 0 {
			l.mu.Unlock()
			return
		}
		batch := l.pending
		l.mu.Unlock()

		err := l.store(batch)

		l.mu.Lock()
		if err != nil {
			l.err = err
		} else {
			l.remember(batch)
		}
		// Appends happen only here and in the sync path, which waits for
		// pending to empty first: pending still starts with batch. The
		// calls answered are those up to its last entry, barriers made
		// while it was written included.
		last, k := batch[len(batch)-1].Index, 0
		for k < len(l.dones) && l.dones[k].last <= last {
			k++
		}
		dones := l.dones[:k:k]
		l.pending = l.pending[len(batch):]
		l.dones = l.dones[k:]
		if len(l.pending) == 0 {
			l.pending, l.dones = nil, nil // let go of the entries
		}
		l.cond.Broadcast()
		l.mu.Unlock()
		for _, d := range dones {
			d.done(err)
		}
	}
}

// drain waits until nothing is pending (l.mu held) and returns the error
// every operation returns now.
func (l *asyncLog) drain() error {
	for len(l.pending) > 0 && l.err == nil {
		l.cond.Wait()
	}
	return l.failed()
}

// GetLog implements raft.LogStore.
func (l *asyncLog) GetLog(index uint64, out *raft.Log) error {
	l.mu.Lock()
	if n := len(l.pending); n > 0 {
		first := l.pending[0].Index
		if index >= first && index <= l.pending[n-1].Index {
			*out = *l.pending[index-first]
			l.mu.Unlock()
			return nil
		}
	}
	if e := l.recent[index%recentLogs]; e != nil && e.Index == index {
		*out = *e
		l.mu.Unlock()
		return nil
	}
	l.mu.Unlock()
	return l.WAL.GetLog(index, out)
}

// LastIndex implements raft.LogStore.
func (l *asyncLog) LastIndex() (uint64, error) {
	l.mu.Lock()
	if n := len(l.pending); n > 0 {
		last := l.pending[n-1].Index
		l.mu.Unlock()
		return last, nil
	}
	l.mu.Unlock()
	return l.WAL.LastIndex()
}

// FirstIndex implements raft.LogStore.
func (l *asyncLog) FirstIndex() (uint64, error) {
	first, err := l.WAL.FirstIndex()
	if err != nil || first != 0 {
		return first, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.pending) > 0 {
		return l.pending[0].Index, nil
	}
	return 0, nil
}

// StoreLog implements raft.LogStore.
func (l *asyncLog) StoreLog(log *raft.Log) error {
	return l.StoreLogs([]*raft.Log{log})
}

// StoreLogs implements raft.LogStore: a follower's append, after the
// asynchronous writes made before it.
func (l *asyncLog) StoreLogs(logs []*raft.Log) error {
	l.mu.Lock()
	err := l.drain()
	l.mu.Unlock()
	if err != nil {
		return err
	}
	if err := l.store(logs); err != nil {
		return err
	}
	l.mu.Lock()
	l.remember(logs)
	l.mu.Unlock()
	return nil
}

// remember keeps logs in recent (l.mu held), within recentMax bytes.
func (l *asyncLog) remember(logs []*raft.Log) {
	for _, e := range logs {
		slot := &l.recent[e.Index%recentLogs]
		if *slot != nil {
			l.recentBytes -= len((*slot).Data)
			*slot = nil
		}
		if l.recentBytes+len(e.Data) <= recentMax {
			*slot = e
			l.recentBytes += len(e.Data)
		}
	}
}

// store appends logs to raft-wal (and fsyncs).
func (l *asyncLog) store(logs []*raft.Log) error {
	if g := l.gate.Load(); g != nil {
		(*g)()
	}
	return l.WAL.StoreLogs(logs)
}

// DeleteRange implements raft.LogStore, after the asynchronous writes made
// before it.
func (l *asyncLog) DeleteRange(min, max uint64) error {
	l.mu.Lock()
	err := l.drain()
	l.mu.Unlock()
	if err != nil {
		return err
	}
	l.mu.Lock()
	l.recent, l.recentBytes = [recentLogs]*raft.Log{}, 0
	l.mu.Unlock()
	return l.WAL.DeleteRange(min, max)
}

// Close writes what is pending, stops the writer and closes raft-wal.
func (l *asyncLog) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.mu.Unlock()
	select {
	case l.kick <- struct{}{}:
	default:
	}
	<-l.stopped
	return l.WAL.Close()
}
