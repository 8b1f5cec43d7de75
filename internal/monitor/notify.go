package monitor

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// RouteConfig is how alerts become notifications, like Alertmanager's
// root route.
type RouteConfig struct {
	// GroupBy are the labels that put alerts in one notification;
	// default [alertname]; ["..."] groups by every label (no grouping).
	GroupBy []string `yaml:"group_by,omitempty" json:"group_by,omitempty"`
	// GroupWait is how long a new group waits for more alerts before its
	// first notification (default 30s).
	GroupWait Duration `yaml:"group_wait,omitempty" json:"group_wait,omitempty"`
	// GroupInterval is how long a group waits after a notification before
	// it notifies about changes (new or resolved alerts; default 5m).
	GroupInterval Duration `yaml:"group_interval,omitempty" json:"group_interval,omitempty"`
	// RepeatInterval is how long before an unchanged group that still
	// fires is notified again (default 4h).
	RepeatInterval Duration `yaml:"repeat_interval,omitempty" json:"repeat_interval,omitempty"`
}

func (rc RouteConfig) withDefaults() RouteConfig {
	if rc.GroupBy == nil {
		rc.GroupBy = []string{"alertname"}
	}
	if rc.GroupWait == 0 {
		rc.GroupWait = Duration(30 * time.Second)
	}
	if rc.GroupInterval == 0 {
		rc.GroupInterval = Duration(5 * time.Minute)
	}
	if rc.RepeatInterval == 0 {
		rc.RepeatInterval = Duration(4 * time.Hour)
	}
	return rc
}

// Validate checks the route.
func (rc RouteConfig) Validate() error {
	if rc.GroupWait < 0 || rc.GroupInterval < 0 || rc.RepeatInterval < 0 {
		return fmt.Errorf("%w: route: negative interval", ErrConfig)
	}
	for _, l := range rc.GroupBy {
		if l != "..." && !labelName.MatchString(l) {
			return fmt.Errorf("%w: route: group_by label %q", ErrConfig, l)
		}
	}
	return nil
}

// InhibitRule mutes alerts (targets) while another alert (source) fires:
// a target is muted when a firing source alert has the same values of the
// Equal labels. An alert that matches the source matchers itself is never
// muted by the rule.
type InhibitRule struct {
	SourceMatchers []string `yaml:"source_matchers" json:"source_matchers"`
	TargetMatchers []string `yaml:"target_matchers" json:"target_matchers"`
	Equal          []string `yaml:"equal,omitempty" json:"equal,omitempty"`
}

type inhibitor struct {
	source, target []Matcher
	equal          []string
}

func (ir InhibitRule) compile() (inhibitor, error) {
	var in inhibitor
	parse := func(ss []string) ([]Matcher, error) {
		var out []Matcher
		for _, s := range ss {
			ms, err := ParseMatchers(s)
			if err != nil {
				return nil, err
			}
			out = append(out, ms...)
		}
		return out, nil
	}
	var err error
	if in.source, err = parse(ir.SourceMatchers); err != nil {
		return in, err
	}
	if in.target, err = parse(ir.TargetMatchers); err != nil {
		return in, err
	}
	if len(in.source) == 0 || len(in.target) == 0 {
		return in, fmt.Errorf("%w: an inhibit rule needs source and target matchers", ErrConfig)
	}
	in.equal = ir.Equal
	return in, nil
}

// Silence mutes the alerts its matchers select from StartsAt until
// EndsAt; an expired silence is kept listed for a while, then dropped.
type Silence struct {
	ID        string    `json:"id"`
	Matchers  []string  `json:"matchers"` // e.g. `alertname="DiskFull"`, `tree=~"/srv/.*"`
	StartsAt  time.Time `json:"starts_at"`
	EndsAt    time.Time `json:"ends_at"`
	CreatedBy string    `json:"created_by"`
	Comment   string    `json:"comment"`

	ms []Matcher
}

// State returns "pending", "active" or "expired" at now.
func (s *Silence) State(now time.Time) string {
	switch {
	case now.Before(s.StartsAt):
		return "pending"
	case now.Before(s.EndsAt):
		return "active"
	}
	return "expired"
}

func (s *Silence) compile() error {
	s.ms = nil
	for _, m := range s.Matchers {
		ms, err := ParseMatchers(m)
		if err != nil {
			return err
		}
		s.ms = append(s.ms, ms...)
	}
	if len(s.ms) == 0 {
		return fmt.Errorf("%w: a silence needs at least one matcher", ErrMatcher)
	}
	if !s.EndsAt.After(s.StartsAt) {
		return fmt.Errorf("%w: a silence must end after it starts", ErrMatcher)
	}
	return nil
}

// Notification is what a sink delivers: the alerts of one group that
// fire, and those that resolved since the group's last notification.
type Notification struct {
	GroupKey    string   `json:"group_key"`
	GroupLabels Labels   `json:"group_labels"`
	Status      string   `json:"status"` // firing if any alert fires, else resolved
	Alerts      []*Alert `json:"alerts"`
	Time        time.Time
}

type group struct {
	labels    Labels
	alerts    map[string]*Alert // latest state, by fingerprint
	nextFlush time.Time
	sent      map[string]bool // fingerprints notified as firing last time
	sentAt    time.Time
	notified  bool
}

// dispatcher groups, deduplicates, silences and inhibits alerts, like
// Alertmanager's dispatcher, driven by an explicit clock: process feeds it
// the alerts, flush returns the notifications due. The Monitor's lock
// serializes its use.
type dispatcher struct {
	route    RouteConfig
	inhibit  []inhibitor
	silences map[string]*Silence
	groups   map[string]*group
}

func newDispatcher(route RouteConfig, inhibit []inhibitor) *dispatcher {
	return &dispatcher{route: route.withDefaults(), inhibit: inhibit, silences: map[string]*Silence{}, groups: map[string]*group{}}
}

func (d *dispatcher) groupLabels(l Labels) Labels {
	if slices.Contains(d.route.GroupBy, "...") {
		return l.Clone()
	}
	return l.only(d.route.GroupBy)
}

// mute sets SilencedBy and InhibitedBy of every alert at now.
func (d *dispatcher) mute(alerts []*Alert, now time.Time) {
	var firing []*Alert
	for _, a := range alerts {
		a.SilencedBy, a.InhibitedBy = nil, nil
		if a.State == StateFiring {
			firing = append(firing, a)
		}
		for _, s := range d.silences {
			if s.State(now) == "active" && matchAll(s.ms, a.Labels) {
				a.SilencedBy = append(a.SilencedBy, s.ID)
			}
		}
		slices.Sort(a.SilencedBy)
	}
	for _, a := range alerts {
		for _, in := range d.inhibit {
			if !matchAll(in.target, a.Labels) || matchAll(in.source, a.Labels) {
				continue
			}
			for _, src := range firing {
				if src == a || !matchAll(in.source, src.Labels) {
					continue
				}
				eq := true
				for _, l := range in.equal {
					eq = eq && a.Labels[l] == src.Labels[l]
				}
				if eq && !slices.Contains(a.InhibitedBy, src.Fingerprint) {
					a.InhibitedBy = append(a.InhibitedBy, src.Fingerprint)
				}
			}
		}
	}
}

// process takes the current alerts (after mute) into their groups.
func (d *dispatcher) process(alerts []*Alert, now time.Time) {
	live := map[string]bool{}
	for _, a := range alerts {
		if a.State == StatePending {
			continue
		}
		gl := d.groupLabels(a.Labels)
		k := gl.key()
		g := d.groups[k]
		muted := len(a.SilencedBy) > 0 || len(a.InhibitedBy) > 0
		if g == nil {
			if muted || a.State != StateFiring {
				continue
			}
			g = &group{labels: gl, alerts: map[string]*Alert{}, sent: map[string]bool{}, nextFlush: now.Add(time.Duration(d.route.GroupWait))}
			d.groups[k] = g
		}
		live[k+"\x00"+a.Fingerprint] = true
		if muted {
			// A muted alert leaves its group; if it was notified as
			// firing, forget that, so it is notified again when unmuted.
			delete(g.alerts, a.Fingerprint)
			delete(g.sent, a.Fingerprint)
			continue
		}
		if a.State == StateResolved && !g.sent[a.Fingerprint] {
			delete(g.alerts, a.Fingerprint)
			continue
		}
		g.alerts[a.Fingerprint] = a.clone()
	}
	// Alerts gone from the input (a rule removed, an expired API alert)
	// count as resolved.
	for k, g := range d.groups {
		for fp, a := range g.alerts {
			if !live[k+"\x00"+fp] && a.State == StateFiring {
				a.State, a.ResolvedAt = StateResolved, now
			}
		}
	}
}

// flush returns the notifications due at now.
func (d *dispatcher) flush(now time.Time) []Notification {
	var out []Notification
	keys := slices.Sorted(maps.Keys(d.groups))
	for _, k := range keys {
		g := d.groups[k]
		if now.Before(g.nextFlush) {
			continue
		}
		var firing, resolved []*Alert
		for _, fp := range slices.Sorted(maps.Keys(g.alerts)) {
			a := g.alerts[fp]
			if a.State == StateFiring {
				firing = append(firing, a)
			} else if g.sent[fp] {
				resolved = append(resolved, a)
			}
		}
		changed := len(resolved) > 0 || len(firing) != len(g.sent)
		for _, a := range firing {
			changed = changed || !g.sent[a.Fingerprint]
		}
		repeat := len(firing) > 0 && g.notified && now.Sub(g.sentAt) >= time.Duration(d.route.RepeatInterval)
		if changed || repeat {
			n := Notification{GroupKey: groupKey(g.labels), GroupLabels: g.labels, Status: StateResolved, Time: now}
			if len(firing) > 0 {
				n.Status = StateFiring
			}
			for _, a := range append(firing, resolved...) {
				n.Alerts = append(n.Alerts, a.clone())
			}
			out = append(out, n)
			g.sent = map[string]bool{}
			for _, a := range firing {
				g.sent[a.Fingerprint] = true
			}
			g.sentAt, g.notified = now, true
		}
		for _, a := range resolved {
			delete(g.alerts, a.Fingerprint)
		}
		if len(g.alerts) == 0 {
			delete(d.groups, k)
			continue
		}
		g.nextFlush = now.Add(time.Duration(d.route.GroupInterval))
	}
	return out
}

func groupKey(l Labels) string {
	s := l.String()
	return strings.TrimSpace(s)
}
