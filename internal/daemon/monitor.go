package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/semprop/semprop/internal/analytics"
	"github.com/semprop/semprop/internal/auth"
	"github.com/semprop/semprop/internal/monitor"
)

// startMonitor registers a health check for every component that
// started, and runs the monitor: metric history, alert rules, grouped
// notifications (events, webhooks, Alertmanager). /readyz follows the
// critical checks (journal, disk, cluster).
func (d *Daemon) startMonitor(context.Context) (func(), error) {
	h := monitor.NewHealth()
	ch := monitor.NewChecks(d.cfg.Monitor.Health)
	h.Register("journal", "journal", ch.Journal(d.journal))
	h.Register("disk", "disk", ch.Disk(d.cfg.Data))
	h.Register("subscriptions", "consumers", ch.Subscriptions(d.manager))
	h.Register("http", "http", ch.HTTP(d.reg))
	if d.rules != nil {
		h.Register("rules", "rules", ch.Rules(d.rules, d.journal.DurableSeq))
		h.Register("actions", "actions", ch.Actions(d.actions))
	}
	for _, t := range d.trees {
		h.Register("capture:"+t.name, "capture", ch.Capture(t.watcher))
		h.Register("bridge:"+t.name, "bridge", ch.Bridge(t.bridge))
		if t.mount != nil {
			h.Register("fuse:"+t.name, "fuse", ch.FUSE(t.mount))
		}
	}
	if d.cluster != nil {
		h.Register("cluster", "cluster", ch.Cluster(d.cluster.node))
	}
	if d.guard != nil {
		h.Register("guard", "guard", d.guardCheck)
	}
	if d.pruner != nil {
		h.Register("snapshots", "snapshots", d.pruner.check)
	}
	if d.analytics != nil {
		h.Register("analytics", "analytics", d.analyticsCheck)
	}
	if d.outputs != nil {
		h.Register("outputs", "outputs", d.outputsCheck)
	}
	if d.replica != nil {
		h.Register("sync", "sync", d.syncCheck)
	}
	if d.cfg.UI.Enabled {
		h.Register("ui", "ui", func() monitor.Check {
			return monitor.Check{Status: monitor.StatusOK, Reason: "serves its embedded files"}
		})
	}
	d.health = h
	d.register(h.Collector())

	dir := filepath.Join(d.cfg.Data, "monitor")
	if err := d.mkdirs(dir); err != nil {
		return nil, err
	}
	var series monitor.SeriesSource
	if d.analytics != nil {
		series = analyticsSeries{d.analytics}
	}
	mon, err := monitor.New(d.cfg.Monitor, monitor.Options{Logger: d.log.With("component", "monitor"), Gatherer: d.reg,
		Publisher: d.manager, Source: d.cfg.Source + "/monitor", Analytics: series, Health: h,
		DataDir: d.cfg.Data, StateDir: dir})
	if err != nil {
		return nil, err
	}
	d.monitor = mon
	d.register(mon.Collector())
	d.serve(mon.Register)
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := mon.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			d.fail(err)
		}
	})
	// SIGHUP reads the alert rule files again (as it does the rule files).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				if err := mon.Reload(); err != nil {
					d.log.Error("monitor: alert rules reload refused; the running rules stay", "err", err)
				}
			}
		}
	})
	return func() { signal.Stop(hup); stop(); wg.Wait() }, nil
}

// guardCheck: the guard works as long as it can keep the copies it is
// asked for; refusals are what it is for.
func (d *Daemon) guardCheck() monitor.Check {
	st := d.guard.Stats()
	c := monitor.Check{Status: monitor.StatusOK, Measurement: map[string]float64{
		"listed": float64(st.Listed), "preserved": float64(st.Preserved), "preserve_failed": float64(st.PreserveFailed)}}
	if st.PreserveFailed > 0 {
		c.Status, c.Reason = monitor.StatusDegraded, fmt.Sprintf("%d copies before destroy failed (the operations went ahead)", st.PreserveFailed)
	}
	return c
}

// analyticsCheck: the engine keeps up with the durable stream.
func (d *Daemon) analyticsCheck() monitor.Check {
	head, at := d.journal.DurableSeq(), d.analytics.Seq()
	lag := float64(0)
	if head > at {
		lag = float64(head - at)
	}
	c := monitor.Check{Status: monitor.StatusOK, Measurement: map[string]float64{"lag_events": lag}}
	limit := d.cfg.Monitor.Health.LagDegraded
	if limit == 0 {
		limit = 100_000
	}
	if lag > float64(limit) {
		c.Status, c.Reason = monitor.StatusDegraded, fmt.Sprintf("%.0f durable events not aggregated yet", lag)
	}
	return c
}

// outputsCheck: every output delivers; one whose target failed within the
// last minute is degraded.
func (d *Daemon) outputsCheck() monitor.Check {
	c := monitor.Check{Status: monitor.StatusOK, Measurement: map[string]float64{}}
	var lagging []string
	for _, o := range d.outputs.Infos() {
		c.Measurement["lag_events:"+o.Name] = float64(o.Lag)
		if o.LastError != "" && time.Since(o.LastErrorAt) < time.Minute {
			lagging = append(lagging, o.Name+": "+o.LastError)
		}
	}
	if len(lagging) > 0 {
		c.Status, c.Reason = monitor.StatusDegraded, fmt.Sprintf("%d output(s) failing: %v", len(lagging), lagging)
	}
	return c
}

// syncCheck: the catalog keeps up with the journal and every peer
// answers; a peer failing several rounds in a row is degraded (sync goes
// on with the others), all of them failing is failing.
func (d *Daemon) syncCheck() monitor.Check {
	st := d.replica.Status()
	head := d.journal.DurableSeq()
	lag := float64(0)
	if head > st.Applied {
		lag = float64(head - st.Applied)
	}
	c := monitor.Check{Status: monitor.StatusOK, Measurement: map[string]float64{
		"lag_events": lag, "entries": float64(st.Entries), "conflicts": float64(st.Conflicts), "peers": float64(len(st.Peers))}}
	var down []string
	for _, p := range st.Peers {
		if p.Fails >= 3 {
			down = append(down, p.URL+": "+p.LastError)
		}
	}
	switch {
	case len(down) > 0 && len(down) == len(st.Peers):
		c.Status, c.Reason = monitor.StatusFailing, fmt.Sprintf("no peer answers: %v", down)
	case len(down) > 0:
		c.Status, c.Reason = monitor.StatusDegraded, fmt.Sprintf("%d of %d peers do not answer: %v", len(down), len(st.Peers), down)
	}
	return c
}

// analyticsSeries gives the analytics rollups to alert expressions.
type analyticsSeries struct{ e *analytics.Engine }

func (a analyticsSeries) Series(_ context.Context, metric, by string, step time.Duration, from, to time.Time) ([]monitor.Series, error) {
	res, s := 1, int64(60)
	switch step {
	case time.Second:
		res, s = 0, 1
	case time.Hour:
		res, s = 2, 3600
	}
	r, err := a.e.Series(auth.Anonymous, metric, by, res, from.Unix()/s*s, (to.Unix()/s+1)*s, 100)
	if err != nil {
		return nil, err
	}
	out := make([]monitor.Series, 0, len(r.Series))
	for _, x := range r.Series {
		ms := monitor.Series{Name: metric, Labels: monitor.Labels{by: x.Key}}
		for i, ts := range r.Times {
			ms.Samples = append(ms.Samples, monitor.Sample{T: time.Unix(ts+s, 0), V: float64(x.Values[i])})
		}
		out = append(out, ms)
	}
	return out, nil
}
