package analytics

import (
	"context"
	"testing"

	"github.com/semprop/semprop/event"
)

// noSource is a stream with nothing in it, for engines fed with Apply.
type noSource struct{}

func (noSource) Next(ctx context.Context, ev *event.Event) error {
	<-ctx.Done()
	return ctx.Err()
}
func (noSource) TryNext(*event.Event) (bool, error) { return false, nil }
func (noSource) Close() error                       { return nil }

func newTestEngine(t testing.TB, cfg Config, opts Options) *Engine {
	t.Helper()
	if opts.Open == nil {
		opts.Open = func(uint64) (Source, error) { return noSource{}, nil }
	}
	e, err := New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.closeStores)
	return e
}
