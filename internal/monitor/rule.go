package monitor

import (
	"context"
	"fmt"
	"maps"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"time"

	"go.yaml.in/yaml/v3"
)

// Duration is a time.Duration written in YAML as "30s", "5m", "1h", "1d".
type Duration time.Duration

// UnmarshalYAML parses a duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	if s == "" || s == "0" {
		*d = 0
		return nil
	}
	v, err := ParseDuration(s)
	if err != nil {
		if v2, err2 := time.ParseDuration(s); err2 == nil {
			v, err = v2, nil
		}
	}
	if err != nil {
		return fmt.Errorf("%w: line %d: %w", ErrConfig, n.Line, err)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration as a string.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// RuleConfig is one alert rule as written in YAML.
type RuleConfig struct {
	// Alert is the rule's name, the alertname label of its alerts.
	Alert string `yaml:"alert" json:"alert"`
	// Expr selects what is wrong now: every element of its result is an
	// alert, labelled like the element.
	Expr string `yaml:"expr" json:"expr"`
	// Recovery, if set, is evaluated instead of Expr for an alert that
	// fires: it keeps firing while its labels are in Recovery's result.
	// Write it as a looser condition (a lower threshold) for hysteresis.
	Recovery string `yaml:"recovery,omitempty" json:"recovery,omitempty"`
	// For is how long Expr must hold before the alert fires (pending
	// meanwhile).
	For Duration `yaml:"for,omitempty" json:"for,omitempty"`
	// KeepFiringFor keeps a firing alert firing this long after the first
	// evaluation where its condition no longer held (as in Prometheus).
	KeepFiringFor Duration `yaml:"keep_firing_for,omitempty" json:"keep_firing_for,omitempty"`
	// Labels are added to the alerts (values are templates).
	Labels map[string]string `yaml:"labels,omitempty" json:"labels,omitempty"`
	// Annotations are templates: {{ $labels.x }}, {{ $value }},
	// {{ $value | humanize }}, humanizeDuration, humanizePercentage,
	// humanize1024.
	Annotations map[string]string `yaml:"annotations,omitempty" json:"annotations,omitempty"`
}

// RuleFile is a file of alert rules and the inhibition rules that go
// with them.
type RuleFile struct {
	Rules        []RuleConfig  `yaml:"rules"`
	InhibitRules []InhibitRule `yaml:"inhibit_rules,omitempty"`
}

// ParseRuleFile decodes and checks a rule file (every expression,
// matcher and template). It takes untrusted input.
func ParseRuleFile(data []byte) (RuleFile, []*Rule, error) {
	var f RuleFile
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && err.Error() != "EOF" {
		return f, nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	seen := map[string]bool{}
	var rules []*Rule
	for i, rc := range f.Rules {
		r, err := NewRule(rc)
		if err != nil {
			return f, nil, fmt.Errorf("rule %d: %w", i+1, err)
		}
		if seen[rc.Alert] {
			return f, nil, fmt.Errorf("%w: rule %d: alert %q defined twice", ErrConfig, i+1, rc.Alert)
		}
		seen[rc.Alert] = true
		rules = append(rules, r)
	}
	for i, ir := range f.InhibitRules {
		if _, err := ir.compile(); err != nil {
			return f, nil, fmt.Errorf("inhibit rule %d: %w", i+1, err)
		}
	}
	return f, rules, nil
}

var alertName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
var labelName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Rule is a checked alert rule with the state of its alerts. Its methods
// are called by one evaluator at a time (the Monitor's lock).
type Rule struct {
	cfg         RuleConfig
	expr        *Expr
	recovery    *Expr
	labels      map[string]*template.Template
	annotations map[string]*template.Template

	active map[string]*Alert // by fingerprint: pending, firing, resolved
	err    error             // last evaluation error
}

// NewRule checks a rule's configuration.
func NewRule(rc RuleConfig) (*Rule, error) {
	if !alertName.MatchString(rc.Alert) {
		return nil, fmt.Errorf("%w: alert name %q: want letters, digits and _", ErrConfig, rc.Alert)
	}
	r := &Rule{cfg: rc, active: map[string]*Alert{}, labels: map[string]*template.Template{}, annotations: map[string]*template.Template{}}
	var err error
	if r.expr, err = ParseExpr(rc.Expr); err != nil {
		return nil, fmt.Errorf("alert %s: expr: %w", rc.Alert, err)
	}
	if rc.Recovery != "" {
		if r.recovery, err = ParseExpr(rc.Recovery); err != nil {
			return nil, fmt.Errorf("alert %s: recovery: %w", rc.Alert, err)
		}
	}
	if rc.For < 0 || rc.KeepFiringFor < 0 {
		return nil, fmt.Errorf("%w: alert %s: negative duration", ErrConfig, rc.Alert)
	}
	for k, v := range rc.Labels {
		if !labelName.MatchString(k) || k == "alertname" {
			return nil, fmt.Errorf("%w: alert %s: label name %q", ErrConfig, rc.Alert, k)
		}
		if r.labels[k], err = parseTemplate(k, v); err != nil {
			return nil, fmt.Errorf("alert %s: label %s: %w", rc.Alert, k, err)
		}
	}
	for k, v := range rc.Annotations {
		if r.annotations[k], err = parseTemplate(k, v); err != nil {
			return nil, fmt.Errorf("alert %s: annotation %s: %w", rc.Alert, k, err)
		}
	}
	return r, nil
}

// Config returns the rule as configured.
func (r *Rule) Config() RuleConfig { return r.cfg }

// Name returns the alert name.
func (r *Rule) Name() string { return r.cfg.Alert }

// Metrics returns the metric names the rule reads.
func (r *Rule) Metrics() []string {
	m := r.expr.Metrics()
	if r.recovery != nil {
		m = append(m, r.recovery.Metrics()...)
	}
	slices.Sort(m)
	return slices.Compact(m)
}

// toFloat converts a template argument (a value or a number literal) to
// a float64; anything else is NaN.
func toFloat(x any) float64 {
	switch v := x.(type) {
	case float64:
		return v
	case int:
		return float64(v)
	case int64:
		return float64(v)
	case uint64:
		return float64(v)
	case string:
		f, err := strconv.ParseFloat(v, 64)
		if err == nil {
			return f
		}
	}
	return math.NaN()
}

var templateFuncs = template.FuncMap{
	"humanize":           humanize,
	"humanize1024":       humanize1024,
	"humanizeDuration":   humanizeDuration,
	"humanizePercentage": func(v any) string { return fmt.Sprintf("%.4g%%", toFloat(v)*100) },
	"toUpper":            strings.ToUpper,
	"toLower":            strings.ToLower,
}

func parseTemplate(name, text string) (*template.Template, error) {
	t, err := template.New(name).Funcs(templateFuncs).Option("missingkey=zero").Parse("{{$labels := .Labels}}{{$value := .Value}}" + text)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return t, nil
}

func expand(t *template.Template, l Labels, v float64) string {
	var b strings.Builder
	if err := t.Execute(&b, struct {
		Labels map[string]string
		Value  float64
	}{l, v}); err != nil {
		return "template error: " + err.Error()
	}
	return b.String()
}

func humanize(x any) string {
	v := toFloat(x)
	if v == 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return fmt.Sprintf("%.4g", v)
	}
	a := math.Abs(v)
	switch {
	case a >= 1:
		for _, p := range []string{"", "k", "M", "G", "T", "P", "E"} {
			if math.Abs(v) < 1000 {
				return fmt.Sprintf("%.4g%s", v, p)
			}
			v /= 1000
		}
		return fmt.Sprintf("%.4gZ", v)
	default:
		for _, p := range []string{"", "m", "u", "n", "p"} {
			if math.Abs(v) >= 1 {
				return fmt.Sprintf("%.4g%s", v, p)
			}
			v *= 1000
		}
		return fmt.Sprintf("%.4gf", v)
	}
}

func humanize1024(x any) string {
	v := toFloat(x)
	for _, p := range []string{"", "Ki", "Mi", "Gi", "Ti", "Pi"} {
		if math.Abs(v) < 1024 {
			return fmt.Sprintf("%.4g%s", v, p)
		}
		v /= 1024
	}
	return fmt.Sprintf("%.4gEi", v)
}

func humanizeDuration(x any) string {
	v := toFloat(x)
	if math.IsNaN(v) || math.IsInf(v, 0) || math.Abs(v) > 1e12 {
		return fmt.Sprintf("%.4g", v)
	}
	if math.Abs(v) < 1 {
		return fmt.Sprintf("%.4gms", v*1000)
	}
	return time.Duration(v * float64(time.Second)).Round(time.Second).String()
}

// Alert states.
const (
	StatePending  = "pending"
	StateFiring   = "firing"
	StateResolved = "resolved"
)

// Alert is one alert: the labels of one element of a rule's result (plus
// alertname and the rule's labels), and its state. Values returned by
// the package are copies, safe to keep.
type Alert struct {
	Labels      Labels            `json:"labels"`
	Annotations map[string]string `json:"annotations,omitempty"`
	State       string            `json:"state"`
	Value       float64           `json:"value"`
	ActiveAt    time.Time         `json:"active_at"`         // the condition first held
	FiredAt     time.Time         `json:"fired_at,omitzero"` // it started firing
	LastTrue    time.Time         `json:"last_true"`         // the condition last held
	ResolvedAt  time.Time         `json:"resolved_at,omitzero"`
	EndsAt      time.Time         `json:"ends_at,omitzero"` // alerts posted from outside: when they expire
	keepSince   time.Time         // first evaluation where a firing alert's condition did not hold
	Fingerprint string            `json:"fingerprint"`
	SilencedBy  []string          `json:"silenced_by,omitempty"`
	InhibitedBy []string          `json:"inhibited_by,omitempty"`
	Source      string            `json:"source,omitempty"` // "rule" or "api"
}

// Name returns the alertname label.
func (a *Alert) Name() string { return a.Labels["alertname"] }

func (a *Alert) clone() *Alert {
	c := *a
	c.Labels = a.Labels.Clone()
	c.Annotations = maps.Clone(a.Annotations)
	c.SilencedBy = slices.Clone(a.SilencedBy)
	c.InhibitedBy = slices.Clone(a.InhibitedBy)
	return &c
}

// resolvedRetention is how long a resolved alert stays listed.
const resolvedRetention = 15 * time.Minute

// eval evaluates the rule at now and advances its alerts' states. It
// returns the state changes (an alert that began firing or resolved).
func (r *Rule) eval(ctx context.Context, ev *Evaluator, now time.Time) (changed []*Alert, err error) {
	res, err := ev.Eval(ctx, r.expr, now)
	r.err = err
	if err != nil {
		return nil, err
	}
	holds := map[string]Elem{}
	labelsOf := func(e Elem) Labels {
		l := e.Labels.Clone()
		if l == nil {
			l = Labels{}
		}
		for k, t := range r.labels {
			l[k] = expand(t, e.Labels, e.V)
		}
		l["alertname"] = r.cfg.Alert
		return l
	}
	for _, e := range res {
		holds[labelsOf(e).Fingerprint()] = e
	}
	if r.recovery != nil {
		firing := false
		for _, a := range r.active {
			firing = firing || a.State == StateFiring
		}
		if firing {
			rec, err := ev.Eval(ctx, r.recovery, now)
			if err != nil {
				r.err = err
				return nil, err
			}
			for _, e := range rec {
				fp := labelsOf(e).Fingerprint()
				if a := r.active[fp]; a != nil && a.State == StateFiring {
					if _, ok := holds[fp]; !ok {
						holds[fp] = e
					}
				}
			}
		}
	}
	for fp, e := range holds {
		a := r.active[fp]
		if a == nil || a.State == StateResolved {
			l := labelsOf(e)
			a = &Alert{Labels: l, State: StatePending, ActiveAt: now, Fingerprint: fp, Source: "rule"}
			r.active[fp] = a
		}
		a.Value, a.LastTrue, a.keepSince = e.V, now, time.Time{}
		a.Annotations = make(map[string]string, len(r.annotations))
		for k, t := range r.annotations {
			a.Annotations[k] = expand(t, e.Labels, e.V)
		}
		if a.State == StatePending && now.Sub(a.ActiveAt) >= time.Duration(r.cfg.For) {
			a.State, a.FiredAt = StateFiring, now
			changed = append(changed, a.clone())
		}
	}
	for fp, a := range r.active {
		if _, ok := holds[fp]; ok {
			continue
		}
		switch a.State {
		case StatePending:
			delete(r.active, fp)
		case StateFiring:
			if a.keepSince.IsZero() {
				a.keepSince = now
			}
			if now.Sub(a.keepSince) >= time.Duration(r.cfg.KeepFiringFor) {
				a.State, a.ResolvedAt = StateResolved, now
				changed = append(changed, a.clone())
			}
		case StateResolved:
			if now.Sub(a.ResolvedAt) > resolvedRetention {
				delete(r.active, fp)
			}
		}
	}
	return changed, nil
}
