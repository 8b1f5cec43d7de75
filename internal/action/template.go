package action

import (
	"fmt"
	"strings"
	"text/template"
	"time"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/rules"
)

// MatchView is what argument templates see: {{.Rule}}, {{.Key}},
// {{range .Events}}{{.Subject}} {{end}}, {{.First.Pid}}.
type MatchView struct {
	ID       string    // the match event's ID
	Seq      uint64    // the match event's seq
	Time     time.Time // the match's event time
	Rule     string
	Key      string
	Severity string
	Message  string
	Seqs     []uint64
	Events   []EventView // the matched events still in the journal, in order
	First    EventView
	Last     EventView
}

// EventView is one matched event as templates see it.
type EventView struct {
	Seq     uint64
	ID      string
	Type    string
	Source  string
	Subject string
	Time    time.Time
	Pid     int32
	Uid     uint32
	Gid     uint32
	Comm    string
	Exe     string
	Inode   uint64
	Size    int64
	Oldpath string
	Target  string
	Attrs   map[string]string
}

func viewOf(ev *event.Event) EventView {
	v := EventView{Seq: ev.Seq, ID: ev.ID.String(), Type: ev.Type, Source: ev.Source, Subject: ev.Subject,
		Time: ev.Time, Comm: ev.Context.Comm, Exe: ev.Context.Exe, Oldpath: ev.Context.OldPath, Target: ev.Context.Target}
	if ev.Context.Has(event.HasPID) {
		v.Pid = ev.Context.PID
	}
	if ev.Context.Has(event.HasUID) {
		v.Uid = ev.Context.UID
	}
	if ev.Context.Has(event.HasGID) {
		v.Gid = ev.Context.GID
	}
	if ev.Context.Has(event.HasInode) {
		v.Inode = ev.Context.Inode
	}
	if ev.Context.Has(event.HasSize) {
		v.Size = ev.Context.Size
	}
	if len(ev.Attrs) > 0 {
		v.Attrs = make(map[string]string, len(ev.Attrs))
		for _, a := range ev.Attrs {
			v.Attrs[a.Key] = a.Value
		}
	}
	return v
}

// newMatchView builds the view of a match event and its matched events.
func newMatchView(ev *event.Event, d *rules.MatchData, events []*event.Event) *MatchView {
	sev, _ := ev.Attr(rules.AttrSeverity)
	m := &MatchView{ID: ev.ID.String(), Seq: ev.Seq, Time: ev.Time, Rule: d.Rule, Key: d.Key, Severity: sev, Message: d.Message, Seqs: d.Seqs}
	for _, e := range events {
		m.Events = append(m.Events, viewOf(e))
	}
	if len(m.Events) > 0 {
		m.First, m.Last = m.Events[0], m.Events[len(m.Events)-1]
	}
	return m
}

// render renders a rule's action arguments over a match.
func render(spec rules.ActionSpec, m *MatchView) (Args, error) {
	args := Args{}
	one := func(name, s string) (string, error) {
		if !strings.Contains(s, "{{") {
			return s, nil
		}
		t, err := template.New(name).Option("missingkey=zero").Parse(s)
		if err != nil {
			return "", fmt.Errorf("%s: %w: %w", name, err, ErrArgs)
		}
		var sb strings.Builder
		if err := t.Execute(&sb, m); err != nil {
			return "", fmt.Errorf("%s: %w: %w", name, err, ErrArgs)
		}
		return sb.String(), nil
	}
	for name, a := range spec.Args {
		if !a.IsList {
			s, err := one(name, a.Value)
			if err != nil {
				return nil, err
			}
			args[name] = s
			continue
		}
		l := make([]string, 0, len(a.List))
		for _, s := range a.List {
			r, err := one(name, s)
			if err != nil {
				return nil, err
			}
			l = append(l, r)
		}
		args[name] = l
	}
	return args, nil
}
