package route

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/filter"
)

func TestFromSpec(t *testing.T) {
	resolve := func(name string) (string, error) {
		if name == "missing" {
			return "", errors.New("no such subscription")
		}
		return name, nil
	}
	const cfg = `{"name":"docs","type":"fs.>","path":"/data/**","filter":"size > 0",
		"where":{"not":{"exact":{"comm":"rsync"}}},"deny":["**/.ssh/**"],
		"redact":{"rules":[{"field":"uid","action":"drop"}]},
		"targets":["a","b"],"strategy":"key-hash","breakers":true}`
	var s Spec
	if err := json.Unmarshal([]byte(cfg), &s); err != nil {
		t.Fatal(err)
	}
	rt, err := FromSpec(s, resolve)
	if err != nil {
		t.Fatal(err)
	}
	r := New[string](Options[string]{})
	if err := r.Add(rt); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		ev   string
		want int
	}{
		{"type=fs.write subject=/data/a.md size=5 comm=vim uid=7", 1},
		{"type=fs.write subject=/data/a.md size=5 comm=rsync", 0},
		{"type=fs.write subject=/data/.ssh/k size=5 comm=vim", 0},
		{"type=fs.write subject=/data/a.md size=0", 0},
	} {
		ev := parseEvent(t, tc.ev)
		got := r.Route(ev, func(_ string, out *event.Event) error {
			if out.Context.Has(event.HasUID) {
				t.Errorf("uid reached the target, want it dropped")
			}
			return nil
		})
		if got != tc.want {
			t.Errorf("Route(%s) = %d, want %d", tc.ev, got, tc.want)
		}
	}

	for _, tc := range []struct {
		cfg  string
		want error
		msg  string
	}{
		{`{"name":"x","type":"fs.>.a","targets":["a"]}`, ErrBadSelector, `route "x": type: `},
		{`{"name":"x","strategy":"random","targets":["a"]}`, ErrBadRoute, `strategy "random"`},
		{`{"name":"x","where":{"range":{"size":{"min":2,"max":1}}},"targets":["a"]}`, filter.ErrSpec, `route "x": where: `},
		{`{"name":"x","deny":["["],"targets":["a"]}`, filter.ErrSpec, `deny[0]`},
		{`{"name":"x","redact":{"name":"r","rules":[{"field":"uid","action":"x"}]},"targets":["a"]}`, filter.ErrSpec, `redact "r": rule 0`},
		{`{"name":"x","targets":["missing"]}`, nil, `target "missing"`},
		{`{"name":"x"}`, ErrBadRoute, "no targets"},
	} {
		var s Spec
		if err := json.Unmarshal([]byte(tc.cfg), &s); err != nil {
			t.Fatal(err)
		}
		_, err := FromSpec(s, resolve)
		if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) || !strings.Contains(fmt.Sprint(err), tc.msg) {
			t.Errorf("FromSpec(%s) error = %v, want %v containing %q", tc.cfg, err, tc.want, tc.msg)
		}
	}
}
