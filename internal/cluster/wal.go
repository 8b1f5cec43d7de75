package cluster

import (
	"cmp"
	"fmt"

	"github.com/hashicorp/go-hclog"
	raftwal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/fs"
	"github.com/hashicorp/raft-wal/metadb"
	"github.com/hashicorp/raft-wal/segment"
	"github.com/hashicorp/raft-wal/types"
)

// walStore is the Raft log and stable store.
type walStore = raftwal.WAL

// openWAL opens the raft-wal log in dir (segments of segSize bytes; 0 =
// raft-wal's default), with segment files read through sealFixFiler.
func openWAL(dir string, log hclog.Logger, meta *metadb.BoltMetaDB, segSize int) (*walStore, error) {
	return raftwal.Open(dir, raftwal.WithLogger(log), raftwal.WithMetaStore(meta),
		raftwal.WithSegmentFiler(sealFixFiler{segment.NewFiler(dir, fs.New())}),
		raftwal.WithSegmentSize(cmp.Or(segSize, raftwal.DefaultSegmentSize)))
}

// sealFixFiler is raft-wal's segment filer, except that it can read a
// segment recorded as sealed that has no index block. raft-wal v0.4.0
// leaves such a segment when raft deletes the log's tail (a follower
// dropping entries a deposed leader never committed): it marks the tail
// segment sealed, up to the last entry kept, without writing the index
// block that reads of a sealed segment need, so that after a restart every
// read of it fails and raft.NewRaft panics. Such a segment is read the way
// raft-wal recovers an unsealed tail after a crash: by scanning its frames
// up to its last complete commit (which writes nothing). raft-wal asks
// it only for entries up to the segment's recorded last index; the newer
// ones it holds are the deleted ones, and the next segment starts after
// that index. Later raft-wal releases write the index block (ForceSeal).
type sealFixFiler struct{ *segment.Filer }

var _ types.SegmentFiler = sealFixFiler{}

// Open implements types.SegmentFiler.
func (f sealFixFiler) Open(info types.SegmentInfo) (types.SegmentReader, error) {
	if info.IndexStart != 0 || info.SealTime.IsZero() {
		return f.Filer.Open(info)
	}
	w, err := f.Filer.RecoverTail(info)
	if err != nil {
		return nil, fmt.Errorf("cluster: read raft log segment %d sealed without an index: %w", info.ID, err)
	}
	return w, nil
}
