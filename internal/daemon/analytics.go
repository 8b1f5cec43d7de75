package daemon

import (
	"context"
	"errors"
	"path/filepath"
	"sync"

	"github.com/semprop/semprop/internal/analytics"
	"github.com/semprop/semprop/internal/api"
	"github.com/semprop/semprop/internal/ui"
)

// startAnalytics runs the analytics engine over the durable stream: the
// aggregates, the rollups under DATA/analytics (rebuilt from the journal
// when missing or behind) and the insights, published as events.
func (d *Daemon) startAnalytics(context.Context) (func(), error) {
	if d.cfg.Analytics == nil {
		return nil, nil
	}
	dir := filepath.Join(d.cfg.Data, "analytics")
	if err := d.mkdirs(dir); err != nil {
		return nil, err
	}
	eng, err := analytics.New(*d.cfg.Analytics, analytics.Options{
		Dir: dir,
		Open: func(from uint64) (analytics.Source, error) {
			r, err := d.manager.Reader(from)
			if err != nil {
				return nil, err
			}
			return r, nil
		},
		FirstSeq:   d.journal.FirstSeq,
		Publisher:  d.manager,
		Source:     d.cfg.Source + "/analytics",
		Principals: d.cfg.Auth.Principals(),
		Logger:     d.log.With("component", "analytics"),
	})
	if err != nil {
		return nil, err
	}
	d.analytics = eng
	d.register(eng.Collector())
	d.serve(eng.Register)
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := eng.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			d.fail(err)
		}
	})
	return func() { stop(); wg.Wait() }, nil
}

// startUI serves the dashboard at /ui/.
func (d *Daemon) startUI(context.Context) (func(), error) {
	if !d.cfg.UI.Enabled {
		return nil, nil
	}
	u, err := ui.New(ui.Options{Config: d.cfg.UI, Logger: d.log.With("component", "ui")})
	if err != nil {
		return nil, err
	}
	d.register(u.Collector())
	d.serve(u.Register)
	return nil, nil
}

// serve has fn register routes on the API server once it is made.
func (d *Daemon) serve(fn func(*api.Server)) { d.onAPI = append(d.onAPI, fn) }

// status adds a section to GET /v1/status once the API server is made.
func (d *Daemon) status(name string, fn func() any) {
	d.serve(func(srv *api.Server) { srv.AddStatus(name, fn) })
}
