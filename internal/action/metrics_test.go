package action

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestCollector(t *testing.T) {
	f := newFixture(t)
	a := f.file(t, "a", "x")
	set := mustRules(t, "rules:\n  - name: r\n    when: 'true'\n    actions:\n      - {type: tag, path: '"+a+"', name: n}\n")
	publish(t, f.s.m, matchEvent("r", "", nil, 1))
	x := f.executor(t, set)
	runUntil(t, x, f.s)
	want := `
# HELP semprop_actions_done_total Actions done.
# TYPE semprop_actions_done_total counter
semprop_actions_done_total 1
# HELP semprop_actions_outcomes_total Match outcomes.
# TYPE semprop_actions_outcomes_total counter
semprop_actions_outcomes_total{outcome="failed"} 0
semprop_actions_outcomes_total{outcome="ok"} 1
semprop_actions_outcomes_total{outcome="rolledback"} 0
`
	if err := testutil.CollectAndCompare(x.Collector(), strings.NewReader(want), "semprop_actions_done_total", "semprop_actions_outcomes_total"); err != nil {
		t.Error(err)
	}
}
