package fanotify

import (
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/semprop/semprop/internal/capture"
)

// outsideBuffer is a read buffer of n events in a directory outside Root,
// with a backend whose handle cache already knows that directory.
func outsideBuffer(n int) (*fanBackend, []byte) {
	w := &Watcher{root: "/watched", log: slog.New(slog.DiscardHandler)}
	w.t = newTracker(w.root, capture.SinkFunc(func(*capture.Op) {}), &w.c, 0, w.log)
	f := &fanBackend{w: w, res: newResolver(-1, nil, w.t, &w.c), procs: newProcCache(nil, &w.c)}
	f.res.cache[string(fidBytes(10))] = &dirInfo{path: "/var/log", inside: false}
	var b buf
	for i := range n {
		b.event(maskModify|maskCloseWrite, 1234,
			record(infoDFIDName, fidBytes(10), name(fmt.Sprintf("log-%06d", i))),
			record(infoFID, fidBytes(uint32(100+i))))
	}
	return f, b.b
}

// TestDropOutsideNoAllocs pins the path every unrelated event on a shared
// file system takes (parse, cached handle, "outside" verdict) at zero
// allocations.
func TestDropOutsideNoAllocs(t *testing.T) {
	f, b := outsideBuffer(100)
	now := time.Now()
	allocs := testing.AllocsPerRun(50, func() { f.handle(b, now) })
	if allocs != 0 {
		t.Errorf("dropping outside events allocates %v times per buffer, want 0", allocs)
	}
	if got := f.w.c.outside.Load(); got != 51*100 {
		t.Errorf("dropped %d events, want %d", got, 51*100)
	}
}

// BenchmarkDropOutside measures the cost of an event outside Root.
func BenchmarkDropOutside(b *testing.B) {
	f, buf := outsideBuffer(1000)
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		f.handle(buf, now)
	}
	b.ReportMetric(b.Elapsed().Seconds()*1e9/float64(b.N*1000), "ns/event")
}
