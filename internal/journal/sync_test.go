package journal

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestSyncNow: under FsyncInterval with an interval that never comes,
// records are durable (written) but not fsynced until Sync, which fsyncs
// them at once; after Close, Sync says the journal is closed.
func TestSyncNow(t *testing.T) {
	j, err := Open(Options{Dir: t.TempDir(), Fsync: FsyncInterval, FsyncInterval: time.Hour, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	last, err := j.Append(ctx, []byte("a"), []byte("b"), []byte("c"))
	if err != nil {
		t.Fatal(err)
	}
	last += 2
	if err := j.WaitDurable(ctx, last); err != nil {
		t.Fatal(err)
	}
	before := j.Stats().Fsyncs
	if err := j.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if got := j.Stats().Fsyncs; got != before+1 {
		t.Errorf("fsyncs %d after Sync, want %d", got, before+1)
	}
	if err := j.Sync(ctx); err != nil { // nothing new: no fsync
		t.Fatal(err)
	}
	if got := j.Stats().Fsyncs; got != before+1 {
		t.Errorf("fsyncs %d after a Sync with nothing written, want %d", got, before+1)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if err := j.Sync(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("Sync after Close: %v, want ErrClosed", err)
	}
}
