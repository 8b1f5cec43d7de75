package cluster

import (
	"bytes"
	"encoding/binary"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/hashicorp/raft-wal/metadb"
)

// recFSM records the indexes it applies and the snapshot it restored.
type recFSM struct {
	mu       sync.Mutex
	restored uint64
	applied  []uint64
}

func (f *recFSM) Apply(l *raft.Log) any {
	f.mu.Lock()
	f.applied = append(f.applied, l.Index)
	f.mu.Unlock()
	return nil
}

func (f *recFSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	last := f.restored
	if n := len(f.applied); n > 0 {
		last = f.applied[n-1]
	}
	return recSnapshot(last), nil
}

// recSnapshot is the index the FSM had applied.
type recSnapshot uint64

func (s recSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(binary.BigEndian.AppendUint64(nil, uint64(s))); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (recSnapshot) Release() {}

func (f *recFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var b [8]byte
	if _, err := io.ReadFull(rc, b[:]); err != nil {
		return err
	}
	f.mu.Lock()
	f.restored, f.applied = binary.BigEndian.Uint64(b[:]), nil
	f.mu.Unlock()
	return nil
}

func (f *recFSM) state() (uint64, []uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.restored, slices.Clone(f.applied)
}

// snapFollower is a follower on semprop's log store, driven by a test that
// plays its leader over an in-memory transport.
type snapFollower struct {
	t    *testing.T
	r    *raft.Raft
	fsm  *recFSM
	lead *raft.InmemTransport
	cfg  []byte
}

func newSnapFollower(t *testing.T, trailingLogs uint64) *snapFollower {
	meta := &metadb.BoltMetaDB{}
	w, err := openWAL(t.TempDir(), hclog.NewNullLogger(), meta, 0)
	if err != nil {
		t.Fatal(err)
	}
	logs := newAsyncLog(w)
	_, ft := raft.NewInmemTransport("f")
	_, lt := raft.NewInmemTransport("l")
	ft.Connect("l", lt)
	lt.Connect("f", ft)
	conf := raft.DefaultConfig()
	conf.LocalID = "f"
	conf.Logger = hclog.NewNullLogger()
	// The test is the only leader: the follower must not campaign.
	conf.HeartbeatTimeout, conf.ElectionTimeout, conf.LeaderLeaseTimeout = time.Minute, time.Minute, time.Second
	conf.TrailingLogs = trailingLogs
	conf.SnapshotThreshold, conf.SnapshotInterval = 1<<40, time.Hour // the test takes them
	fsm := &recFSM{}
	r, err := raft.NewRaft(conf, fsm, logs, logs, raft.NewInmemSnapshotStore(), ft)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Shutdown().Error(); err != nil {
			t.Error(err)
		}
		_ = logs.Close()
		_ = meta.Close()
		_ = lt.Close()
	})
	cfg := raft.EncodeConfiguration(raft.Configuration{Servers: []raft.Server{
		{Suffrage: raft.Voter, ID: "l", Address: "l"},
		{Suffrage: raft.Voter, ID: "f", Address: "f"},
	}})
	return &snapFollower{t: t, r: r, fsm: fsm, lead: lt, cfg: cfg}
}

func (f *snapFollower) header() raft.RPCHeader {
	return raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("l"), Addr: []byte("l")}
}

// appendEntries sends entries first..last of term, after prev (of
// prevTerm), and reports whether the follower took them.
func (f *snapFollower) appendEntries(term, prev, prevTerm, first, last, commit uint64) bool {
	f.t.Helper()
	var entries []*raft.Log
	for i := first; i <= last && first > 0; i++ {
		entries = append(entries, &raft.Log{Index: i, Term: term, Type: raft.LogCommand, Data: []byte{byte(i)}})
	}
	req := &raft.AppendEntriesRequest{RPCHeader: f.header(), Term: term, PrevLogEntry: prev, PrevLogTerm: prevTerm,
		Entries: entries, LeaderCommitIndex: commit}
	var resp raft.AppendEntriesResponse
	if err := f.lead.AppendEntries("f", "f", req, &resp); err != nil {
		f.t.Fatalf("append entries after %d: %v", prev, err)
	}
	return resp.Success
}

// installSnapshot sends a snapshot ending at index (of term).
func (f *snapFollower) installSnapshot(term, index uint64) {
	f.t.Helper()
	data := binary.BigEndian.AppendUint64(nil, index)
	req := &raft.InstallSnapshotRequest{RPCHeader: f.header(), SnapshotVersion: raft.SnapshotVersionMax, Term: term,
		LastLogIndex: index, LastLogTerm: term, Configuration: f.cfg, ConfigurationIndex: 1, Size: int64(len(data))}
	var resp raft.InstallSnapshotResponse
	if err := f.lead.InstallSnapshot("f", "f", req, &resp, bytes.NewReader(data)); err != nil {
		f.t.Fatalf("install snapshot at %d: %v", index, err)
	}
	if !resp.Success {
		f.t.Fatalf("install snapshot at %d refused", index)
	}
}

// waitApplied waits until the follower restored from restored and applied
// want after it.
func (f *snapFollower) waitApplied(restored uint64, want []uint64) {
	f.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, applied := f.fsm.state()
		if got == restored && slices.Equal(applied, want) {
			return
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("follower restored %d and applied %v, want %d and %v", got, applied, restored, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// applyAndCompact has the follower take entries 1..n (term 1), apply them,
// snapshot them and compact its log, keeping the trailing entries.
func (f *snapFollower) applyAndCompact(n uint64) {
	f.t.Helper()
	if !f.appendEntries(1, 0, 0, 1, n, n) {
		f.t.Fatalf("follower refused entries 1..%d", n)
	}
	f.waitApplied(0, seqs(1, n))
	if err := f.r.Snapshot().Error(); err != nil {
		f.t.Fatal(err)
	}
}

func seqs(from, to uint64) []uint64 {
	var s []uint64
	for i := from; i <= to; i++ {
		s = append(s, i)
	}
	return s
}

// TestInstallSnapshotLogAhead: a follower whose log runs past a snapshot
// it is sent (its answers to the entries after the snapshot were lost,
// so the leader fell back to the snapshot) keeps its log and state, and
// the leader's next AppendEntries after them applies. Upstream removed
// the whole log but kept its last index, accepted that AppendEntries on
// the stale index and panicked applying entries it had deleted ("log not
// found").
func TestInstallSnapshotLogAhead(t *testing.T) {
	f := newSnapFollower(t, 10240)
	if !f.appendEntries(1, 0, 0, 1, 10, 0) {
		t.Fatal("follower refused entries 1..10")
	}
	f.installSnapshot(1, 5)
	if !f.appendEntries(1, 10, 1, 11, 12, 12) {
		t.Fatal("follower refused entries 11..12 after the entries it holds")
	}
	f.waitApplied(0, seqs(1, 12))
}

// TestInstallSnapshotBehindApplied: a follower that applied past the
// snapshot it is sent, and compacted its log behind a snapshot of its own,
// keeps its state when its log holds the snapshot's last entry. Upstream
// restored the snapshot, moving the applied index back behind the
// compacted entries, and panicked applying them at the next commit ("log
// not found"): the panic a cluster test hit after a slow catch-up.
func TestInstallSnapshotBehindApplied(t *testing.T) {
	f := newSnapFollower(t, 20)
	f.applyAndCompact(30) // the log keeps 11..30
	f.installSnapshot(1, 20)
	if !f.appendEntries(1, 30, 1, 31, 32, 32) {
		t.Fatal("follower refused entries 31..32 after the entries it holds")
	}
	f.waitApplied(0, seqs(1, 32))
}

// TestInstallSnapshotBehindCompacted: a follower sent a snapshot whose
// last entry it has already compacted away restores it and drops its
// log; the leader sends the entries after the snapshot again.
func TestInstallSnapshotBehindCompacted(t *testing.T) {
	f := newSnapFollower(t, 2)
	f.applyAndCompact(30) // the log keeps 29..30
	f.installSnapshot(1, 20)
	if f.appendEntries(1, 30, 1, 31, 32, 32) {
		t.Fatal("follower took entries after the log it dropped")
	}
	if !f.appendEntries(1, 20, 1, 21, 32, 32) {
		t.Fatal("follower refused the entries after the snapshot")
	}
	f.waitApplied(20, seqs(21, 32))
}

// TestInstallSnapshotConflict: a follower whose entry at the snapshot's
// index has another term drops its whole log, and takes the entries
// after the snapshot. Upstream kept the last index of the removed log,
// so it refused every AppendEntries after the snapshot and was sent the
// snapshot again, forever (hashicorp/raft#697).
func TestInstallSnapshotConflict(t *testing.T) {
	f := newSnapFollower(t, 10240)
	if !f.appendEntries(1, 0, 0, 1, 10, 0) {
		t.Fatal("follower refused entries 1..10")
	}
	f.installSnapshot(2, 5)
	if f.appendEntries(2, 10, 1, 11, 11, 11) {
		t.Fatal("follower took entries after its removed log's last index")
	}
	if !f.appendEntries(2, 5, 2, 6, 7, 7) {
		t.Fatal("follower refused the entries after the snapshot")
	}
	f.waitApplied(5, []uint64{6, 7})
}
