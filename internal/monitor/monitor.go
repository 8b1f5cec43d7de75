package monitor

import (
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/semprop/semprop/internal/atomicfile"
)

// Config is the monitoring section of the daemon's configuration.
type Config struct {
	// Interval is how often the metrics are sampled and the alert rules
	// evaluated (default 15s).
	Interval Duration `yaml:"interval,omitempty" json:"interval,omitempty"`
	// History is how much sample history is kept for rate, predict and
	// the other range functions (default 6h; a range longer than this
	// sees only this much).
	History Duration `yaml:"history,omitempty" json:"history,omitempty"`
	// DefaultRules runs the embedded default rules (default true).
	DefaultRules *bool `yaml:"default_rules,omitempty" json:"default_rules,omitempty"`
	// RuleFiles are further alert rule files (YAML: rules, inhibit_rules).
	RuleFiles []string `yaml:"rule_files,omitempty" json:"rule_files,omitempty"`
	// Route groups alerts into notifications.
	Route RouteConfig `yaml:"route,omitempty" json:"route,omitempty"`
	// InhibitRules are added to those of the rule files.
	InhibitRules []InhibitRule `yaml:"inhibit_rules,omitempty" json:"inhibit_rules,omitempty"`
	// Events publishes notifications as semprop.alert.firing and
	// semprop.alert.resolved events (default true).
	Events *bool `yaml:"events,omitempty" json:"events,omitempty"`
	// Webhooks receive notifications in Alertmanager's webhook format.
	Webhooks []WebhookConfig `yaml:"webhooks,omitempty" json:"webhooks,omitempty"`
	// Alertmanagers receive every alert at /api/v2/alerts, every minute
	// while it fires and once when it resolves; they group, silence and
	// inhibit on their own.
	Alertmanagers []AlertmanagerConfig `yaml:"alertmanagers,omitempty" json:"alertmanagers,omitempty"`
	// ExternalURL is the daemon's URL as users reach it, for the
	// generatorURL of alerts (optional).
	ExternalURL string `yaml:"external_url,omitempty" json:"external_url,omitempty"`
	// Health holds the health checks' thresholds.
	Health HealthConfig `yaml:"health,omitempty" json:"health,omitempty"`
}

// Validate checks the configuration; rule files are read by New.
func (c Config) Validate() error {
	if c.Interval < 0 || c.History < 0 {
		return fmt.Errorf("%w: negative interval or history", ErrConfig)
	}
	if err := c.Route.Validate(); err != nil {
		return err
	}
	for i, ir := range c.InhibitRules {
		if _, err := ir.compile(); err != nil {
			return fmt.Errorf("inhibit rule %d: %w", i+1, err)
		}
	}
	for _, w := range c.Webhooks {
		if err := checkURL(w.URL); err != nil {
			return fmt.Errorf("webhook: %w", err)
		}
	}
	for _, a := range c.Alertmanagers {
		if err := checkURL(a.URL); err != nil {
			return fmt.Errorf("alertmanager: %w", err)
		}
	}
	return c.Health.Validate()
}

func checkURL(u string) error {
	if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
		return fmt.Errorf("%w: url %q: want http:// or https://", ErrConfig, redactURL(u))
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.Interval == 0 {
		c.Interval = Duration(15 * time.Second)
	}
	if c.History == 0 {
		c.History = Duration(6 * time.Hour)
	}
	c.Route = c.Route.withDefaults()
	c.Health = c.Health.WithDefaults()
	return c
}

//go:embed defaults.yaml
var defaultRules []byte

// DefaultRules returns the embedded default rule file.
func DefaultRules() []byte { return slices.Clone(defaultRules) }

// Options are the Monitor's dependencies.
type Options struct {
	Logger *slog.Logger
	// Gatherer is the daemon's metric registry, sampled every interval.
	Gatherer prometheus.Gatherer
	// Publisher, if set (and Config.Events), receives alert events.
	Publisher Publisher
	// Source is the CloudEvents source of alert events (default
	// "semprop://monitor").
	Source string
	// Analytics serves analytics() in expressions; nil selects nothing.
	Analytics SeriesSource
	// Health is served at GET /v1/health; nil serves none.
	Health *Health
	// DataDir, if set, is the data directory whose disk space and inodes
	// are exported as semprop_data_disk_* (what the disk rules read).
	DataDir string
	// StateDir, if set, keeps the silences (silences.json) across
	// restarts.
	StateDir string
	// HTTPClient sends webhooks and Alertmanager posts (default: a
	// client with a 10s timeout).
	HTTPClient *http.Client
	// Now is the clock (default time.Now); tests and the replay set it.
	Now func() time.Time
}

// Monitor samples the daemon's metrics, evaluates alert rules, and turns
// alerts into notifications (grouped, deduplicated, silenced, inhibited)
// delivered as events, webhooks and to Alertmanagers. Its methods are
// safe for concurrent use; Run drives it.
type Monitor struct {
	cfg   Config
	opts  Options
	log   *slog.Logger
	store *Store
	ev    *Evaluator
	sinks []sink

	// mu guards the rules and their states, the dispatcher, API alerts and the
	// Alertmanager schedule.
	mu        sync.Mutex
	rules     []*Rule
	disp      *dispatcher
	apiAlerts map[string]*Alert
	amSent    time.Time
	amDirty   bool
	lastEval  time.Time // evaluations never go back in time

	queue chan func(context.Context)

	metrics monitorMetrics
}

type monitorMetrics struct {
	evals, evalFailures *prometheus.CounterVec // by rule
	transitions         *prometheus.CounterVec // by rule, to
	notifications       *prometheus.CounterVec // by sink, outcome
	alerts              *prometheus.Desc
	dropped             prometheus.Counter
}

// New loads the rules (defaults and files) and returns a Monitor.
func New(cfg Config, opts Options) (*Monitor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Source == "" {
		opts.Source = "semprop://monitor"
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	m := &Monitor{cfg: cfg, opts: opts, log: opts.Logger, apiAlerts: map[string]*Alert{}, queue: make(chan func(context.Context), 256)}
	rules, ins, err := loadRules(cfg)
	if err != nil {
		return nil, err
	}
	m.rules = rules
	m.disp = newDispatcher(cfg.Route, ins)
	keep := keepFor(rules)
	m.store = NewStore(time.Duration(cfg.History), keep)
	m.ev = &Evaluator{Store: m.store, Analytics: opts.Analytics}
	if opts.Publisher != nil && (cfg.Events == nil || *cfg.Events) {
		m.sinks = append(m.sinks, &eventSink{pub: opts.Publisher, source: opts.Source})
	}
	for _, w := range cfg.Webhooks {
		m.sinks = append(m.sinks, &webhookSink{cfg: w, hc: opts.HTTPClient, externalURL: cfg.ExternalURL})
	}
	m.metrics = monitorMetrics{
		evals:         prometheus.NewCounterVec(prometheus.CounterOpts{Name: "semprop_alert_rule_evaluations_total", Help: "Evaluations of each alert rule."}, []string{"rule"}),
		evalFailures:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "semprop_alert_rule_evaluation_failures_total", Help: "Evaluations of each alert rule that failed."}, []string{"rule"}),
		transitions:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "semprop_alert_transitions_total", Help: "Alerts that began firing or resolved, by rule and state."}, []string{"rule", "state"}),
		notifications: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "semprop_alert_notifications_total", Help: "Notifications delivered, by sink and outcome (sent, failed)."}, []string{"sink", "outcome"}),
		dropped:       prometheus.NewCounter(prometheus.CounterOpts{Name: "semprop_alert_notifications_dropped_total", Help: "Notifications dropped because the delivery queue was full."}),
		alerts:        prometheus.NewDesc("semprop_alerts", "Alerts by state (pending, firing, resolved), silenced and inhibited ones included.", []string{"state"}, nil),
	}
	if err := m.loadSilences(); err != nil {
		return nil, err
	}
	return m, nil
}

// loadRules parses the default rules (unless turned off) and the rule
// files, and compiles the inhibit rules.
func loadRules(cfg Config) ([]*Rule, []inhibitor, error) {
	var files [][]byte
	if cfg.DefaultRules == nil || *cfg.DefaultRules {
		files = append(files, defaultRules)
	}
	for _, p := range cfg.RuleFiles {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: rule file: %w", ErrConfig, err)
		}
		files = append(files, b)
	}
	var rules []*Rule
	inhibit := slices.Clone(cfg.InhibitRules)
	seen := map[string]bool{}
	for i, b := range files {
		f, rs, err := ParseRuleFile(b)
		if err != nil {
			name := "default rules"
			if cfg.DefaultRules == nil || *cfg.DefaultRules {
				if i > 0 {
					name = cfg.RuleFiles[i-1]
				}
			} else {
				name = cfg.RuleFiles[i]
			}
			return nil, nil, fmt.Errorf("%s: %w", name, err)
		}
		for _, r := range rs {
			if seen[r.Name()] {
				return nil, nil, fmt.Errorf("%w: alert %q defined twice", ErrConfig, r.Name())
			}
			seen[r.Name()] = true
		}
		rules = append(rules, rs...)
		inhibit = append(inhibit, f.InhibitRules...)
	}
	var ins []inhibitor
	for _, ir := range inhibit {
		in, err := ir.compile()
		if err != nil {
			return nil, nil, err
		}
		ins = append(ins, in)
	}
	return rules, ins, nil
}

// keepFor selects the metrics rules read, for the sample store.
func keepFor(rules []*Rule) func(string) bool {
	keep := map[string]bool{}
	for _, r := range rules {
		for _, n := range r.Metrics() {
			keep[n] = true
		}
	}
	return func(n string) bool { return keep[n] }
}

// Reload reads the rule files again and swaps the rules in; on an error
// nothing changes. A rule whose configuration did not change keeps its
// alerts (pending, firing, recently resolved); the firing alerts of a rule
// that is gone or changed resolve (and are notified so). The sample store
// keeps the metrics of the new rules from now on: a rule over a metric no
// rule read before has no history yet.
func (m *Monitor) Reload() error {
	rules, ins, err := loadRules(m.cfg)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	old := make(map[string]*Rule, len(m.rules))
	for _, r := range m.rules {
		old[r.Name()] = r
	}
	for i, r := range rules {
		if o := old[r.Name()]; o != nil && reflect.DeepEqual(o.cfg, r.cfg) {
			rules[i] = o
			delete(old, r.Name())
		}
	}
	now := m.opts.Now()
	for _, o := range old {
		for fp, a := range o.active {
			if a.State != StateFiring {
				continue
			}
			a.State, a.ResolvedAt, a.EndsAt = StateResolved, now, now
			m.metrics.transitions.WithLabelValues(o.Name(), a.State).Inc()
			m.apiAlerts[fp] = a // expires from there like a posted alert
		}
	}
	m.rules = rules
	m.disp.inhibit = ins
	m.store.setKeep(keepFor(rules))
	m.amDirty = true
	m.log.Info("monitor: alert rules reloaded", "rules", len(rules))
	return nil
}

// Rules returns the loaded rules' configurations.
func (m *Monitor) Rules() []RuleConfig {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]RuleConfig, len(m.rules))
	for i, r := range m.rules {
		out[i] = r.Config()
	}
	return out
}

// Store returns the sample store the rules read.
func (m *Monitor) Store() *Store { return m.store }

// Run samples and evaluates every interval and delivers notifications
// until ctx is done; it returns nil then.
func (m *Monitor) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case job := <-m.queue:
				job(ctx)
			}
		}
	}()
	defer wg.Wait()
	eval := time.NewTicker(time.Duration(m.cfg.Interval))
	defer eval.Stop()
	flush := time.NewTicker(time.Second)
	defer flush.Stop()
	m.deliver(m.Step(ctx, m.opts.Now()))
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-eval.C:
			m.deliver(m.Step(ctx, m.opts.Now()))
		case <-flush.C:
			m.deliver(m.Flush(m.opts.Now()))
		}
	}
}

// Step samples the metrics at now, evaluates every rule, and returns the
// notifications due. Run calls it every interval; tests call it with
// their own clock.
func (m *Monitor) Step(ctx context.Context, now time.Time) []Notification {
	if m.opts.Gatherer != nil {
		fams, err := m.opts.Gatherer.Gather()
		if err != nil {
			m.log.Debug("monitor: gather", "err", err)
		}
		m.store.AddFamilies(now, fams)
	}
	if m.opts.DataDir != "" {
		if u, err := statDisk(m.opts.DataDir); err == nil {
			for name, v := range diskGauges(u) {
				m.store.Append(name, Labels{}, now, v)
			}
		}
	}
	return m.Evaluate(ctx, now)
}

// Evaluate evaluates every rule at now against the samples stored so
// far (without sampling) and returns the notifications due.
func (m *Monitor) Evaluate(ctx context.Context, now time.Time) []Notification {
	m.mu.Lock()
	defer m.mu.Unlock()
	if now.Before(m.lastEval) {
		return nil // a late caller with an older clock reading
	}
	m.lastEval = now
	for _, r := range m.rules {
		m.metrics.evals.WithLabelValues(r.Name()).Inc()
		changed, err := r.eval(ctx, m.ev, now)
		if err != nil {
			m.metrics.evalFailures.WithLabelValues(r.Name()).Inc()
			m.log.Warn("monitor: alert rule", "rule", r.Name(), "err", err)
			continue
		}
		for _, a := range changed {
			m.metrics.transitions.WithLabelValues(r.Name(), a.State).Inc()
			m.amDirty = true
		}
	}
	for fp, a := range m.apiAlerts {
		switch {
		case a.State == StateFiring && !now.Before(a.EndsAt):
			a.State, a.ResolvedAt = StateResolved, a.EndsAt
			m.amDirty = true
		case a.State == StateResolved && now.Sub(a.ResolvedAt) > resolvedRetention:
			delete(m.apiAlerts, fp)
		}
	}
	all := m.alertsLocked()
	m.disp.mute(all, now)
	m.disp.process(all, now)
	if len(m.cfg.Alertmanagers) > 0 && (m.amDirty || now.Sub(m.amSent) >= alertmanagerResend) {
		m.amDirty, m.amSent = false, now
		pas := postableAlerts(all, m.cfg.ExternalURL, now)
		if len(pas) > 0 {
			m.enqueue(func(ctx context.Context) { m.postAlertmanagers(ctx, pas) })
		}
	}
	m.expireSilencesLocked(now)
	return m.disp.flush(now)
}

// Flush returns the notifications due at now without evaluating.
func (m *Monitor) Flush(now time.Time) []Notification {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.disp.flush(now)
}

func (m *Monitor) alertsLocked() []*Alert {
	var all []*Alert
	for _, r := range m.rules {
		for _, fp := range slices.Sorted(maps.Keys(r.active)) {
			all = append(all, r.active[fp])
		}
	}
	for _, fp := range slices.Sorted(maps.Keys(m.apiAlerts)) {
		all = append(all, m.apiAlerts[fp])
	}
	return all
}

// Alerts returns copies of the current alerts (pending, firing, and
// resolved within the last 15 minutes) with what mutes them.
func (m *Monitor) Alerts() []*Alert {
	m.mu.Lock()
	defer m.mu.Unlock()
	all := m.alertsLocked()
	m.disp.mute(all, m.opts.Now())
	out := make([]*Alert, len(all))
	for i, a := range all {
		out[i] = a.clone()
	}
	return out
}

func (m *Monitor) enqueue(job func(context.Context)) {
	select {
	case m.queue <- job:
	default:
		m.metrics.dropped.Inc()
		m.log.Warn("monitor: delivery queue full, notification dropped")
	}
}

// deliver queues the notifications for every sink.
func (m *Monitor) deliver(ns []Notification) {
	for _, n := range ns {
		for _, s := range m.sinks {
			m.enqueue(func(ctx context.Context) {
				if err := s.notify(ctx, n); err != nil {
					m.metrics.notifications.WithLabelValues(s.name(), "failed").Inc()
					m.log.Warn("monitor: notification", "sink", s.name(), "group", n.GroupKey, "err", err)
					return
				}
				m.metrics.notifications.WithLabelValues(s.name(), "sent").Inc()
			})
		}
	}
}

func (m *Monitor) postAlertmanagers(ctx context.Context, pas []PostableAlert) {
	body, err := json.Marshal(pas)
	if err != nil {
		return
	}
	for _, am := range m.cfg.Alertmanagers {
		u := strings.TrimRight(am.URL, "/") + "/api/v2/alerts"
		if err := postRetry(ctx, m.opts.HTTPClient, u, am.BearerToken, time.Duration(am.Timeout), body); err != nil {
			m.metrics.notifications.WithLabelValues("alertmanager", "failed").Inc()
			m.log.Warn("monitor: alertmanager", "err", err)
			continue
		}
		m.metrics.notifications.WithLabelValues("alertmanager", "sent").Inc()
	}
}

// Post takes alerts from outside (POST /v1/alerts, Alertmanager's
// format) into the pipeline. Each needs an alertname label; it fires
// from StartsAt (default now) until EndsAt (default 5 minutes from now:
// post it again to keep it firing).
func (m *Monitor) Post(pas []PostableAlert) error {
	now := m.opts.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, pa := range pas {
		if !alertName.MatchString(pa.Labels["alertname"]) {
			return fmt.Errorf("%w: alert %d: the alertname label is missing or not a name", ErrConfig, i+1)
		}
		for k := range pa.Labels {
			if !labelName.MatchString(k) {
				return fmt.Errorf("%w: alert %d: label name %q", ErrConfig, i+1, k)
			}
		}
	}
	for _, pa := range pas {
		l := Labels(maps.Clone(pa.Labels))
		fp := l.Fingerprint()
		a := m.apiAlerts[fp]
		if a == nil || a.State == StateResolved {
			a = &Alert{Labels: l, Fingerprint: fp, Source: "api", ActiveAt: now, FiredAt: now}
			if !pa.StartsAt.IsZero() && pa.StartsAt.Before(now) {
				a.ActiveAt, a.FiredAt = pa.StartsAt, pa.StartsAt
			}
			m.apiAlerts[fp] = a
		}
		a.Annotations = maps.Clone(pa.Annotations)
		a.LastTrue, a.State = now, StateFiring
		a.EndsAt = pa.EndsAt
		if a.EndsAt.IsZero() {
			a.EndsAt = now.Add(5 * time.Minute)
		}
		if !a.EndsAt.After(now) {
			a.State, a.ResolvedAt = StateResolved, a.EndsAt
		}
		m.amDirty = true
	}
	return nil
}

// AddSilence adds a silence (ID, StartsAt default now, are filled in) and
// returns it.
func (m *Monitor) AddSilence(s Silence) (Silence, error) {
	now := m.opts.Now()
	if s.StartsAt.IsZero() {
		s.StartsAt = now
	}
	if err := s.compile(); err != nil {
		return s, err
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	s.ID = hex.EncodeToString(b[:])
	m.mu.Lock()
	m.disp.silences[s.ID] = &s
	err := m.saveSilencesLocked()
	m.mu.Unlock()
	return s, err
}

// ExpireSilence ends a silence now; ErrNoSilence if id is not known.
func (m *Monitor) ExpireSilence(id string) error {
	now := m.opts.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.disp.silences[id]
	if s == nil {
		return fmt.Errorf("%w: %q", ErrNoSilence, id)
	}
	if s.EndsAt.After(now) {
		s.EndsAt = now
		if s.StartsAt.After(now) {
			s.StartsAt = now.Add(-time.Nanosecond)
		}
	}
	return m.saveSilencesLocked()
}

// Silences returns the silences, newest first.
func (m *Monitor) Silences() []Silence {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Silence, 0, len(m.disp.silences))
	for _, s := range m.disp.silences {
		out = append(out, *s)
	}
	slices.SortFunc(out, func(a, b Silence) int { return b.StartsAt.Compare(a.StartsAt) })
	return out
}

// silenceRetention is how long an expired silence stays listed.
const silenceRetention = 24 * time.Hour

func (m *Monitor) expireSilencesLocked(now time.Time) {
	changed := false
	for id, s := range m.disp.silences {
		if now.Sub(s.EndsAt) > silenceRetention {
			delete(m.disp.silences, id)
			changed = true
		}
	}
	if changed {
		if err := m.saveSilencesLocked(); err != nil {
			m.log.Warn("monitor: save silences", "err", err)
		}
	}
}

func (m *Monitor) silencesPath() string {
	if m.opts.StateDir == "" {
		return ""
	}
	return filepath.Join(m.opts.StateDir, "silences.json")
}

func (m *Monitor) saveSilencesLocked() error {
	p := m.silencesPath()
	if p == "" {
		return nil
	}
	list := make([]*Silence, 0, len(m.disp.silences))
	for _, id := range slices.Sorted(maps.Keys(m.disp.silences)) {
		list = append(list, m.disp.silences[id])
	}
	b, err := json.Marshal(list)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(m.opts.StateDir, 0o700); err != nil {
		return fmt.Errorf("save silences: %w", err)
	}
	if err := atomicfile.Write(p, b, 0o600); err != nil {
		return fmt.Errorf("save silences: %w", err)
	}
	return nil
}

func (m *Monitor) loadSilences() error {
	p := m.silencesPath()
	if p == "" {
		return nil
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("load silences: %w", err)
	}
	var list []*Silence
	if err := json.Unmarshal(b, &list); err != nil {
		return fmt.Errorf("%w: silences.json: %w", ErrConfig, err)
	}
	for _, s := range list {
		if err := s.compile(); err != nil {
			m.log.Warn("monitor: dropping a stored silence", "id", s.ID, "err", err)
			continue
		}
		m.disp.silences[s.ID] = s
	}
	return nil
}

func diskGauges(u diskUsage) map[string]float64 {
	return map[string]float64{
		"semprop_data_disk_free_bytes":   float64(u.FreeBytes),
		"semprop_data_disk_total_bytes":  float64(u.TotalBytes),
		"semprop_data_disk_free_inodes":  float64(u.FreeInodes),
		"semprop_data_disk_total_inodes": float64(u.TotalInodes),
	}
}

var diskHelp = map[string]string{
	"semprop_data_disk_free_bytes":   "Bytes free (to unprivileged users) on the data directory's file system.",
	"semprop_data_disk_total_bytes":  "Size in bytes of the data directory's file system.",
	"semprop_data_disk_free_inodes":  "Inodes free on the data directory's file system.",
	"semprop_data_disk_total_inodes": "Inodes of the data directory's file system.",
}

// Collector exports the monitor's metrics: rule evaluations, alert
// transitions and states, notifications, and the data directory's disk
// space (semprop_data_disk_*) when Options.DataDir is set.
func (m *Monitor) Collector() prometheus.Collector { return (*monitorCollector)(m) }

type monitorCollector Monitor

func (c *monitorCollector) Describe(ch chan<- *prometheus.Desc) {
	prometheus.DescribeByCollect(c, ch)
}

func (c *monitorCollector) Collect(ch chan<- prometheus.Metric) {
	m := (*Monitor)(c)
	m.metrics.evals.Collect(ch)
	m.metrics.evalFailures.Collect(ch)
	m.metrics.transitions.Collect(ch)
	m.metrics.notifications.Collect(ch)
	m.metrics.dropped.Collect(ch)
	counts := map[string]int{StatePending: 0, StateFiring: 0, StateResolved: 0}
	m.mu.Lock()
	for _, a := range m.alertsLocked() {
		counts[a.State]++
	}
	m.mu.Unlock()
	for _, s := range []string{StatePending, StateFiring, StateResolved} {
		ch <- prometheus.MustNewConstMetric(m.metrics.alerts, prometheus.GaugeValue, float64(counts[s]), s)
	}
	if m.opts.DataDir != "" {
		if u, err := statDisk(m.opts.DataDir); err == nil {
			g := diskGauges(u)
			for _, name := range slices.Sorted(maps.Keys(g)) {
				ch <- prometheus.MustNewConstMetric(prometheus.NewDesc(name, diskHelp[name], nil, nil), prometheus.GaugeValue, g[name])
			}
		}
	}
}
