package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/semprop/semprop/internal/action"
	"github.com/semprop/semprop/internal/rules"
)

// startRules runs the rule engine over the durable stream when rule files
// are configured: matches are published through the manager, the
// checkpoint lives in DATA/rules, SIGHUP reloads the files.
func (d *Daemon) startRules(ctx context.Context) (func(), error) {
	if d.cfg.Rules == nil {
		return nil, nil
	}
	dir := filepath.Join(d.cfg.Data, "rules")
	if err := d.mkdirs(dir); err != nil {
		return nil, err
	}
	eng, err := rules.NewEngine(d.cfg.Rules, rules.Options{
		Dir: dir,
		Open: func(from uint64) (rules.Source, error) {
			r, err := d.manager.Reader(from)
			if err != nil {
				return nil, err
			}
			return r, nil
		},
		Publisher:   d.manager,
		Start:       d.journal.LastSeq() + 1, // the first start: new events only
		Source:      d.cfg.Source + "/rules",
		Lateness:    d.cfg.RulesLateness,
		MaxRate:     d.cfg.RulesMaxRate,
		IdleAdvance: 2 * time.Second, // absent and not_followed_by fire on a quiet stream
		Logger:      d.log.With("component", "rules"),
	})
	if err != nil {
		return nil, err
	}
	d.rules = eng
	d.register(eng.Collector())
	runCtx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := eng.Run(runCtx); err != nil && !errors.Is(err, context.Canceled) {
			d.fail(err)
		}
	})
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	wg.Go(func() {
		for {
			select {
			case <-runCtx.Done():
				return
			case <-hup:
				if err := d.reloadRules(); err != nil {
					d.log.Error("rules: reload refused; the running rules stay", "err", err)
				}
			}
		}
	})
	d.log.Info("rule engine", "rules", len(eng.Rules()), "files", d.cfg.RuleFiles)
	return func() {
		signal.Stop(hup)
		stop()
		wg.Wait()
	}, nil
}

// reloadRules loads the rule files again and swaps the set in atomically,
// keeping the state of unchanged rules. On error the running set stays.
func (d *Daemon) reloadRules() error {
	set, err := rules.Load(d.cfg.RuleFiles...)
	if err != nil {
		return err
	}
	if err := action.NewRegistry().Check(set); err != nil {
		return err
	}
	if err := d.rules.Reload(set); err != nil {
		return err
	}
	if d.actions != nil {
		if err := d.actions.SetRules(set); err != nil {
			d.log.Warn("actions: the new rules' actions are not in effect", "err", err)
		}
	}
	d.log.Info("rules reloaded", "rules", len(d.rules.Rules()))
	return nil
}

// rulesHandler serves /v1/rules (admin):
//
//	GET  /v1/rules                  every rule with its counters, and the engine's
//	POST /v1/rules/reload           load the files again (400 and no change on error)
//	POST /v1/rules/{name}/enable    enable or disable one rule
//	POST /v1/rules/{name}/disable
func (d *Daemon) rulesHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/rules", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"rules": d.rules.Rules(), "stats": d.rules.Stats()})
	})
	mux.HandleFunc("POST /v1/rules/reload", func(w http.ResponseWriter, r *http.Request) {
		if err := d.reloadRules(); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error(), "field": "rules"})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"rules": d.rules.Rules()})
	})
	for _, op := range []string{"enable", "disable"} {
		mux.HandleFunc("POST /v1/rules/{name}/"+op, func(w http.ResponseWriter, r *http.Request) {
			err := d.rules.SetEnabled(r.PathValue("name"), op == "enable")
			switch {
			case errors.Is(err, rules.ErrNoSuchRule):
				writeJSON(w, http.StatusNotFound, map[string]string{"error": err.Error(), "field": "name"})
			case err != nil:
				writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			default:
				writeJSON(w, http.StatusOK, map[string]any{"rules": d.rules.Rules()})
			}
		})
	}
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}
