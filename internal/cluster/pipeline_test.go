package cluster

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// wedgedPipeline is a raft pipeline whose queues are full: AppendEntries
// waits until Close, as raft's netPipeline does.
type wedgedPipeline struct {
	closed chan struct{}
	closes atomic.Int32
}

func (p *wedgedPipeline) AppendEntries(*raft.AppendEntriesRequest, *raft.AppendEntriesResponse) (raft.AppendFuture, error) {
	<-p.closed
	return nil, raft.ErrPipelineShutdown
}

func (p *wedgedPipeline) Consumer() <-chan raft.AppendFuture { return nil }

func (p *wedgedPipeline) Close() error {
	if p.closes.Add(1) == 1 {
		close(p.closed)
	}
	return nil
}

// TestPipelineStallEnds: a send into a pipeline that never makes room
// fails after pipelineStall, closing the pipeline, instead of blocking
// raft's replication (and its Shutdown) forever.
func TestPipelineStallEnds(t *testing.T) {
	defer func(d time.Duration) { pipelineStall = d }(pipelineStall)
	pipelineStall = 50 * time.Millisecond
	inner := &wedgedPipeline{closed: make(chan struct{})}
	p := &boundedPipeline{AppendPipeline: inner}
	done := make(chan error, 1)
	go func() {
		_, err := p.AppendEntries(&raft.AppendEntriesRequest{}, &raft.AppendEntriesResponse{})
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, errPipelineStalled) {
			t.Errorf("AppendEntries on a wedged pipeline: %v, want errPipelineStalled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("AppendEntries on a wedged pipeline still waits after 10s")
	}
	if inner.closes.Load() != 1 {
		t.Errorf("the pipeline was closed %d times, want once", inner.closes.Load())
	}
}
