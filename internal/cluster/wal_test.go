package cluster

import (
	"fmt"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/hashicorp/raft-wal/metadb"
)

// TestWALTailTruncationSurvivesRestart: raft clears a follower's log
// suffix (entries a deposed leader never committed) with DeleteRange up to
// the last index. raft-wal v0.4.0 then marks the tail segment sealed
// without writing its index block, and after a restart every read of that
// segment fails ("sealed segment has no index block"): raft.NewRaft panics
// and the node never starts again. Found by TestCrashRounds. openWAL reads
// such a segment by scanning its frames.
func TestWALTailTruncationSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	open := func() (*walStore, func()) {
		t.Helper()
		meta := &metadb.BoltMetaDB{}
		w, err := openWAL(dir, hclog.NewNullLogger(), meta, 0)
		if err != nil {
			t.Fatalf("open wal: %v", err)
		}
		return w, func() { w.Close(); meta.Close() }
	}
	w, closeW := open()
	var logs []*raft.Log
	for i := uint64(1); i <= 10; i++ {
		logs = append(logs, &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: fmt.Appendf(nil, "entry %d", i)})
	}
	if err := w.StoreLogs(logs); err != nil {
		t.Fatal(err)
	}
	// What raft does with a conflicting suffix: delete it, append the new
	// leader's entries.
	if err := w.DeleteRange(8, 10); err != nil {
		t.Fatal(err)
	}
	if err := w.StoreLogs([]*raft.Log{{Index: 8, Term: 2, Type: raft.LogCommand, Data: []byte("new 8")}}); err != nil {
		t.Fatal(err)
	}
	closeW()

	w, closeW = open()
	defer closeW()
	if last, err := w.LastIndex(); err != nil || last != 8 {
		t.Fatalf("LastIndex after restart = %d, %v, want 8", last, err)
	}
	for i := uint64(1); i <= 8; i++ {
		var l raft.Log
		if err := w.GetLog(i, &l); err != nil {
			t.Fatalf("GetLog(%d) after restart: %v", i, err)
		}
		want := fmt.Sprintf("entry %d", i)
		if i == 8 {
			want = "new 8"
		}
		if string(l.Data) != want || l.Index != i {
			t.Errorf("GetLog(%d) = index %d %q, want %q", i, l.Index, l.Data, want)
		}
	}
	var l raft.Log
	if err := w.GetLog(9, &l); err == nil {
		t.Errorf("GetLog(9) after restart = %q, want not found (it was deleted)", l.Data)
	}
}
