package procinfo

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestCollector(t *testing.T) {
	src := fakeProc{}
	c := newCache(src, nil)
	src.set(1, 0, "init", "/sbin/init")
	c.apply(fork(1000, 1, 2))
	c.Lookup(2, Window{1100, 1200})
	want := `
# HELP semprop_procinfo_hits_total Lookups answered from the cache.
# TYPE semprop_procinfo_hits_total counter
semprop_procinfo_hits_total 1
# HELP semprop_procinfo_events_total Process connector events applied.
# TYPE semprop_procinfo_events_total counter
semprop_procinfo_events_total 1
# HELP semprop_procinfo_processes Processes the cache holds (alive, and exited within the retention).
# TYPE semprop_procinfo_processes gauge
semprop_procinfo_processes 2
`
	if err := testutil.CollectAndCompare(c.Collector(), strings.NewReader(want),
		"semprop_procinfo_hits_total", "semprop_procinfo_events_total", "semprop_procinfo_processes"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(c.Collector()); n != len(cacheCounters)+1 {
		t.Errorf("%d metrics, want %d", n, len(cacheCounters)+1)
	}
}
