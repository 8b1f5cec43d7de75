package monitor

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

func firing(name string, extra ...string) *Alert {
	l := Labels{"alertname": name}
	for i := 0; i+1 < len(extra); i += 2 {
		l[extra[i]] = extra[i+1]
	}
	return &Alert{Labels: l, State: StateFiring, Fingerprint: l.Fingerprint(), FiredAt: t0}
}

func resolvedCopy(a *Alert, at time.Time) *Alert {
	c := a.clone()
	c.State, c.ResolvedAt = StateResolved, at
	return c
}

// describe renders notifications as "status:fp-names" for comparison.
func describe(ns []Notification) string {
	var parts []string
	for _, n := range ns {
		var names []string
		for _, a := range n.Alerts {
			names = append(names, a.Labels["alertname"]+"/"+a.Labels["i"]+"="+a.State)
		}
		parts = append(parts, fmt.Sprintf("%s[%s]", n.GroupKey, strings.Join(names, " ")))
	}
	return strings.Join(parts, "; ")
}

func step(d *dispatcher, alerts []*Alert, at time.Time) []Notification {
	d.mute(alerts, at)
	d.process(alerts, at)
	return d.flush(at)
}

func TestDispatcherGrouping(t *testing.T) {
	d := newDispatcher(RouteConfig{GroupWait: Duration(30 * time.Second), GroupInterval: Duration(5 * time.Minute), RepeatInterval: Duration(time.Hour)}, nil)
	a1, a2 := firing("Lag", "i", "1"), firing("Lag", "i", "2")
	sec := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }

	// Two alerts of one group within group_wait: one notification.
	if got := step(d, []*Alert{a1}, sec(0)); len(got) != 0 {
		t.Fatalf("at 0s: %s, want nothing (group_wait)", describe(got))
	}
	if got := step(d, []*Alert{a1, a2}, sec(15)); len(got) != 0 {
		t.Fatalf("at 15s: %s, want nothing (group_wait)", describe(got))
	}
	if got, want := describe(step(d, []*Alert{a1, a2}, sec(30))), `{alertname="Lag"}[Lag/1=firing Lag/2=firing]`; got != want {
		t.Fatalf("at 30s: %s, want %s", got, want)
	}
	// Unchanged: deduplicated until repeat_interval.
	for s := 60; s < 3600; s += 30 {
		if got := step(d, []*Alert{a1, a2}, sec(s)); len(got) != 0 {
			t.Fatalf("at %ds: %s, want nothing (dedup)", s, describe(got))
		}
	}
	if got := step(d, []*Alert{a1, a2}, sec(3630)); len(got) != 1 {
		t.Fatalf("at 3630s: %s, want the repeat", describe(got))
	}
	// One resolves: notified at the next group_interval, with the other
	// still firing.
	r2 := resolvedCopy(a2, sec(3700))
	if got := step(d, []*Alert{a1, r2}, sec(3700)); len(got) != 0 {
		t.Fatalf("at 3700s: %s, want nothing before group_interval", describe(got))
	}
	if got, want := describe(step(d, []*Alert{a1, r2}, sec(3630+300))), `{alertname="Lag"}[Lag/1=firing Lag/2=resolved]`; got != want {
		t.Fatalf("at 3930s: %s, want %s", got, want)
	}
	// The last resolves: a resolved notification, then the group is gone.
	r1 := resolvedCopy(a1, sec(4000))
	if got, want := describe(step(d, []*Alert{r1, r2}, sec(4230))), `{alertname="Lag"}[Lag/1=resolved]`; got != want {
		t.Fatalf("at 4230s: %s, want %s", got, want)
	}
	if len(d.groups) != 0 {
		t.Errorf("groups left: %d", len(d.groups))
	}
}

// TestDispatcherFlapWithinWait: an alert that fires and resolves within
// group_wait is never notified.
func TestDispatcherFlapWithinWait(t *testing.T) {
	d := newDispatcher(RouteConfig{}, nil)
	a := firing("Blip")
	step(d, []*Alert{a}, t0)
	if got := step(d, []*Alert{resolvedCopy(a, t0.Add(10*time.Second))}, t0.Add(40*time.Second)); len(got) != 0 {
		t.Errorf("notified %s, want nothing", describe(got))
	}
}

func TestDispatcherInhibition(t *testing.T) {
	in, err := InhibitRule{SourceMatchers: []string{`alertname="DiskFull"`}, TargetMatchers: []string{`severity="warning"`}, Equal: []string{"host"}}.compile()
	if err != nil {
		t.Fatal(err)
	}
	d := newDispatcher(RouteConfig{GroupWait: Duration(time.Second), GroupBy: []string{"..."}}, []inhibitor{in})
	src := firing("DiskFull", "host", "a", "severity", "critical")
	same := firing("FsyncSlow", "host", "a", "severity", "warning")
	other := firing("FsyncSlow", "host", "b", "severity", "warning")
	alerts := []*Alert{src, same, other}
	step(d, alerts, t0)
	got := step(d, alerts, t0.Add(2*time.Second))
	var names []string
	for _, n := range got {
		for _, a := range n.Alerts {
			names = append(names, a.Labels["alertname"]+"@"+a.Labels["host"])
		}
	}
	slices.Sort(names)
	if want := []string{"DiskFull@a", "FsyncSlow@b"}; !slices.Equal(names, want) {
		t.Errorf("notified %v, want %v (FsyncSlow@a inhibited)", names, want)
	}
	if !slices.Equal(same.InhibitedBy, []string{src.Fingerprint}) {
		t.Errorf("InhibitedBy = %v, want [%s]", same.InhibitedBy, src.Fingerprint)
	}
	// The source resolves: the target is notified.
	alerts = []*Alert{resolvedCopy(src, t0.Add(time.Minute)), same, other}
	step(d, alerts, t0.Add(10*time.Minute))
	got = step(d, alerts, t0.Add(10*time.Minute+2*time.Second))
	if !strings.Contains(describe(got), "FsyncSlow") {
		t.Errorf("after the source resolved: %s, want FsyncSlow@a notified", describe(got))
	}
}

func TestDispatcherSilence(t *testing.T) {
	d := newDispatcher(RouteConfig{GroupWait: Duration(time.Second)}, nil)
	s := &Silence{ID: "s1", Matchers: []string{`alertname="Noisy"`}, StartsAt: t0, EndsAt: t0.Add(time.Hour)}
	if err := s.compile(); err != nil {
		t.Fatal(err)
	}
	d.silences[s.ID] = s
	a := firing("Noisy")
	step(d, []*Alert{a}, t0)
	if got := step(d, []*Alert{a}, t0.Add(time.Minute)); len(got) != 0 {
		t.Fatalf("silenced alert notified: %s", describe(got))
	}
	if !slices.Equal(a.SilencedBy, []string{"s1"}) {
		t.Errorf("SilencedBy = %v", a.SilencedBy)
	}
	// After the silence expires it is notified.
	step(d, []*Alert{a}, t0.Add(time.Hour+time.Second))
	if got := step(d, []*Alert{a}, t0.Add(time.Hour+3*time.Second)); len(got) != 1 {
		t.Errorf("after expiry: %s, want one notification", describe(got))
	}
	if s.State(t0.Add(2*time.Hour)) != "expired" || s.State(t0.Add(-time.Second)) != "pending" || s.State(t0) != "active" {
		t.Error("Silence.State is wrong")
	}
}
