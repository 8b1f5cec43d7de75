package rules

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/cep"
	"github.com/semprop/semprop/internal/filter"
)

// The event types the engine publishes, and the extension attributes it
// sets on them.
const (
	TypeMatch     = "semprop.rule.match"
	TypeThrottled = "semprop.rule.throttled"

	AttrRule     = "rule"      // the rule's name
	AttrSeverity = "severity"  // info, warning or critical
	AttrDepth    = "ruledepth" // 1 for a match of ordinary events, n+1 for a match of depth-n matches
	AttrTags     = "ruletags"  // the rule's tags, comma-separated
)

// MatchData is the data of a semprop.rule.match event, and what
// `semprop rules test` prints for each match.
type MatchData struct {
	Rule    string   `json:"rule"`
	Key     string   `json:"key"`
	Seqs    []uint64 `json:"seqs"`
	Message string   `json:"message"`
	// Time is the match's event time: the last event's, or the deadline
	// for not_followed_by and absent.
	Time time.Time `json:"time"`
	// Throttled is set on semprop.rule.throttled: the rule fired more
	// than its rate allows; its further matches in this minute are
	// dropped.
	Throttled bool `json:"throttled,omitempty"`
}

// matchData builds the data of a match of rule r.
func matchData(r *Rule, m *cep.Match) MatchData {
	d := MatchData{Rule: m.Pattern, Key: m.Key, Seqs: m.Seqs(), Time: time.Unix(0, m.Time).UTC(), Throttled: m.Throttled}
	for i := range d.Seqs {
		d.Seqs[i] &^= settledSeq // a settled event's: its last event's seq
	}
	if m.Throttled {
		d.Seqs = []uint64{}
		d.Message = fmt.Sprintf("rule %s throttled: more than %d matches in a window", m.Pattern, r.pattern.MaxRate)
		return d
	}
	d.Message = message(r, m)
	return d
}

// message renders the rule's output template (one line), or a default.
func message(r *Rule, m *cep.Match) string {
	if r.tmpl == nil {
		s := fmt.Sprintf("%s: %d event(s)", r.Name, len(m.Events))
		if m.Key != "" {
			s = fmt.Sprintf("%s: %s: %d event(s)", r.Name, m.Key, len(m.Events))
		}
		return s
	}
	data := map[string]any{"rule": r.Name, "key": m.Key, "count": len(m.Events), "severity": r.Severity}
	views := make([]map[string]any, len(m.Events))
	for i, ev := range m.Events {
		views[i] = view(ev)
	}
	data["events"] = views
	if len(views) > 0 {
		data["first"], data["last"] = views[0], views[len(views)-1]
	}
	for i, s := range r.Sequence {
		if s.As != "" && i < len(views) {
			data[s.As] = views[i]
		}
	}
	var sb strings.Builder
	if err := r.tmpl.Execute(&sb, data); err != nil {
		return fmt.Sprintf("%s: output: %v", r.Name, err)
	}
	return strings.Join(strings.Fields(sb.String()), " ")
}

// envFields lists filter.Env's fields by their expression names.
var envFields = func() []struct {
	name string
	idx  int
} {
	t := reflect.TypeFor[filter.Env]()
	var out []struct {
		name string
		idx  int
	}
	for i := range t.NumField() {
		out = append(out, struct {
			name string
			idx  int
		}{t.Field(i).Tag.Get("expr"), i})
	}
	return out
}()

// view is an event as templates see it: the fields by the names
// expressions use ({{.first.subject}}, {{.w.pid}}).
func view(ev *event.Event) map[string]any {
	var env filter.Env
	fillEnv(&env, ev)
	v := reflect.ValueOf(env)
	m := make(map[string]any, len(envFields))
	for _, f := range envFields {
		m[f.name] = v.Field(f.idx).Interface()
	}
	m["time"] = ev.Time.UTC().Format(time.RFC3339Nano)
	return m
}

// matchEvent builds the event that publishes a match. Its ID is derived
// from the rule, the key, the match time and the matched seqs, so that the
// same match computed twice (a replay after a crash) has the same ID.
func matchEvent(r *Rule, m *cep.Match, source string) *event.Event {
	d := matchData(r, m)
	ev := &event.Event{Type: TypeMatch, Source: source, Subject: m.Key, Time: d.Time,
		DataContentType: "application/json", Priority: priorityOf(r.Severity)}
	if ev.Subject == "" && len(m.Events) > 0 {
		ev.Subject = m.Events[0].Subject
	}
	if m.Throttled {
		ev.Type = TypeThrottled
	}
	ev.SetAttr(AttrRule, r.Name)
	ev.SetAttr(AttrSeverity, r.Severity)
	ev.SetAttr(AttrDepth, strconv.Itoa(m.Depth))
	if len(r.Tags) > 0 {
		ev.SetAttr(AttrTags, strings.Join(r.Tags, ","))
	}
	ev.Data, _ = json.Marshal(d)
	ev.ID = MatchID(ev.Type, r.Name, m.Key, m.Time, d.Seqs)
	return ev
}

// MatchID is the deterministic ID of a published match: a ULID whose time
// is the match's (milliseconds) and whose 80 random bits are a hash of
// what identifies the match.
func MatchID(typ, rule, key string, at int64, seqs []uint64) event.ID {
	h := sha256.New()
	var b [8]byte
	for _, s := range []string{typ, rule, key} {
		binary.BigEndian.PutUint64(b[:], uint64(len(s)))
		h.Write(b[:])
		h.Write([]byte(s))
	}
	binary.BigEndian.PutUint64(b[:], uint64(at))
	h.Write(b[:])
	for _, s := range seqs {
		binary.BigEndian.PutUint64(b[:], s)
		h.Write(b[:])
	}
	sum := h.Sum(nil)
	var id event.ID
	ms := uint64(max(at, 0) / 1e6)
	for i := 5; i >= 0; i-- {
		id[i] = byte(ms)
		ms >>= 8
	}
	copy(id[6:], sum[:10])
	return id
}

func priorityOf(sev string) event.Priority {
	if sev == SeverityCritical {
		return event.PriorityHigh
	}
	return event.PriorityNormal
}

// DefaultMaxDepth is the default depth limit of rules on matches: events
// of this depth or more are shown to no rule.
const DefaultMaxDepth = 3
