package auth

import (
	"errors"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/filter"
)

func TestTokenNamesRequiredAndUnique(t *testing.T) {
	for _, tc := range []struct {
		name  string
		specs []TokenSpec
		want  string // in the error; "" means accepted
	}{
		{"missing name", []TokenSpec{{Token: "token-one-0123456789", Scopes: []string{"admin"}}}, "token #1: name is required"},
		{"blank name", []TokenSpec{{Name: "  ", Token: "token-one-0123456789", Scopes: []string{"admin"}}}, "token #1: name is required"},
		{"duplicate", []TokenSpec{
			{Name: "ci", Token: "token-one-0123456789", Scopes: []string{"admin"}},
			{Name: "ci", Token: "token-two-0123456789", Scopes: []string{"subscribe:>"}},
		}, `token #2: name "ci" is also the name of token #1`},
		{"distinct", []TokenSpec{
			{Name: "ci", Token: "token-one-0123456789", Scopes: []string{"admin"}},
			{Name: "cd", Token: "token-two-0123456789", Scopes: []string{"subscribe:>"}},
		}, ""},
	} {
		_, err := New(tc.specs)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: New = %v, want accepted", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrConfig)):
			t.Errorf("%s: New = %v, want ErrConfig containing %q", tc.name, err, tc.want)
		}
	}
}

// Identity is the name: reordering the configuration keeps every name
// bound to the same secret.
func TestIdentityFollowsNameNotPosition(t *testing.T) {
	one := TokenSpec{Name: "one", Token: "token-one-0123456789", Scopes: []string{"subscribe:>"}}
	two := TokenSpec{Name: "two", Token: "token-two-0123456789", Scopes: []string{"subscribe:>"}}
	for _, order := range [][]TokenSpec{{one, two}, {two, one}} {
		a, err := New(order)
		if err != nil {
			t.Fatal(err)
		}
		r := httptest.NewRequest("GET", "/v1/events", nil)
		r.Header.Set("Authorization", "Bearer token-one-0123456789")
		if p, err := a.Authenticate(r); err != nil || p.Name != "one" {
			t.Errorf("order %s,%s: token one authenticates as %v, %v", order[0].Name, order[1].Name, p, err)
		}
	}
}

func TestBearerSchemeAndQueryToken(t *testing.T) {
	a, err := New([]TokenSpec{{Name: "t", Token: "token-token-0123456789", Scopes: []string{"subscribe:>"}}})
	if err != nil {
		t.Fatal(err)
	}
	const tok = "token-token-0123456789"
	for _, tc := range []struct {
		method, target, header string
		ok                     bool
	}{
		{"GET", "/v1/events", "Bearer " + tok, true},
		{"GET", "/v1/events", "bearer " + tok, true},
		{"GET", "/v1/events", "BEARER  " + tok, true},
		{"GET", "/v1/events", "Basic " + tok, false},
		{"GET", "/v1/events", "Bearer" + tok, false},
		// ?token= only where a browser cannot set headers.
		{"GET", "/v1/stream?token=" + tok, "", true},
		{"GET", "/v1/ws?token=" + tok, "", true},
		{"GET", "/v1/events?token=" + tok, "", false},
		{"POST", "/v1/events?token=" + tok, "", false},
		{"POST", "/v1/subscriptions?token=" + tok, "", false},
		{"POST", "/v1/subscriptions/x/fetch?token=" + tok, "", false},
		{"GET", "/metrics?token=" + tok, "", false},
		{"POST", "/v1/stream?token=" + tok, "", false},
		{"GET", "/v1/stream/?token=" + tok, "", false},
	} {
		r := httptest.NewRequest(tc.method, tc.target, nil)
		if tc.header != "" {
			r.Header.Set("Authorization", tc.header)
		}
		p, err := a.Authenticate(r)
		if ok := err == nil && p.Name == "t"; ok != tc.ok {
			t.Errorf("%s %s (Authorization %q): authenticated = %v (%v), want %v", tc.method, tc.target, tc.header, ok, err, tc.ok)
		}
	}
}

func TestPublishProvenance(t *testing.T) {
	a, err := New([]TokenSpec{
		{Name: "limited", Token: "token-limited-0123456789", Scopes: []string{"publish:>"}, Paths: []string{"/srv/a/**"}},
		{Name: "open", Token: "token-open-0123456789", Scopes: []string{"publish:>"}},
		{Name: "high", Token: "token-high-0123456789", Scopes: []string{"publish:>"}, MaxPriority: "high"},
		{Name: "relay", Token: "token-relay-0123456789", Scopes: []string{"publish:>", "import"}, Paths: []string{"/srv/a/**"}},
		{Name: "admin", Token: "token-admin-0123456789", Scopes: []string{"admin"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	get := func(name string) *Principal {
		p, ok := a.Lookup(name)
		if !ok {
			t.Fatalf("no token %s", name)
		}
		return p
	}
	type mod func(*event.Event)
	for _, tc := range []struct {
		name  string
		token string
		ev    mod
		field string // "" means allowed
	}{
		{"plain event", "limited", nil, ""},
		{"dot-dot escape", "limited", func(e *event.Event) { e.Subject = "/srv/a/../../etc/passwd" }, "subject"},
		{"dot-dot inside", "limited", func(e *event.Event) { e.Subject = "/srv/a/b/../c" }, "subject"},
		{"relative subject", "limited", func(e *event.Event) { e.Subject = "srv/a/x" }, "subject"},
		{"double slash", "limited", func(e *event.Event) { e.Subject = "/srv//a/x" }, "subject"},
		{"oldpath outside", "limited", func(e *event.Event) { e.Context.OldPath = "/etc/shadow" }, "oldpath"},
		{"oldpath inside", "limited", func(e *event.Event) { e.Context.OldPath = "/srv/a/old" }, ""},
		{"target outside", "limited", func(e *event.Event) { e.Context.Target = "/etc/shadow" }, "target"},
		{"relative target escapes", "limited", func(e *event.Event) { e.Context.Target = "../../../etc/shadow" }, "target"},
		{"relative target inside", "limited", func(e *event.Event) { e.Context.Target = "../a/y" }, ""},
		{"boundary kernel", "limited", func(e *event.Event) { e.Boundary = event.BoundaryKernel }, "boundary"},
		{"boundary user", "limited", func(e *event.Event) { e.Boundary = event.BoundaryUser }, "boundary"},
		{"inode", "open", func(e *event.Event) { e.Context.Known |= event.HasInode }, "inode"},
		{"boundaries", "limited", func(e *event.Event) { e.Boundaries = e.Boundaries.Add(event.BoundaryFUSE) }, "boundaries"},
		{"comm", "open", func(e *event.Event) { e.Context.Comm = "sshd" }, "comm"},
		{"exe", "open", func(e *event.Event) { e.Context.Exe = "/usr/sbin/sshd" }, "exe"},
		{"pid", "open", func(e *event.Event) { e.Context.SetPID(1) }, "pid"},
		{"tid", "open", func(e *event.Event) { e.Context.SetTID(1) }, "tid"},
		{"uid", "open", func(e *event.Event) { e.Context.SetUID(0) }, "uid"},
		{"gid", "open", func(e *event.Event) { e.Context.SetGID(0) }, "gid"},
		{"rescan flag", "open", func(e *event.Event) { e.Flags |= event.FlagRescan }, "rescan"},
		{"hlc", "open", func(e *event.Event) { e.HLC = event.HLC{Wall: 1 << 60} }, "hlc"},
		{"daemon source", "open", func(e *event.Event) { e.Source = "semprop://host/kernel" }, "source"},
		{"daemon source upper", "open", func(e *event.Event) { e.Source = "SEMPROP://host/kernel" }, "source"},
		{"fs type", "open", func(e *event.Event) { e.Type = "fs.write" }, "type"},
		{"semprop type", "open", func(e *event.Event) { e.Type = "semprop.deadletter" }, "type"},
		{"fsx is not fs", "open", func(e *event.Event) { e.Type = "fsx.write" }, ""},
		{"fs type by admin", "admin", func(e *event.Event) { e.Type = "fs.write" }, "type"},
		{"comm by admin", "admin", func(e *event.Event) { e.Context.Comm = "x" }, "comm"},
		{"priority critical", "open", func(e *event.Event) { e.Priority = event.PriorityCritical }, "priority"},
		{"priority high", "open", func(e *event.Event) { e.Priority = event.PriorityHigh }, "priority"},
		{"priority bulk", "open", func(e *event.Event) { e.Priority = event.PriorityBulk }, ""},
		{"priority high allowed", "high", func(e *event.Event) { e.Priority = event.PriorityHigh }, ""},
		{"priority critical over max", "high", func(e *event.Event) { e.Priority = event.PriorityCritical }, "priority"},
		// import lifts provenance checks, not paths or priority.
		{"import fs", "relay", func(e *event.Event) {
			e.Type, e.Boundary, e.Source = "fs.write", event.BoundaryKernel, "semprop://h/kernel"
			e.Context.Comm = "vim"
			e.Context.SetPID(4)
		}, ""},
		{"import still path-limited", "relay", func(e *event.Event) { e.Type, e.Subject = "fs.write", "/etc/passwd" }, "subject"},
		{"import oldpath still checked", "relay", func(e *event.Event) { e.Context.OldPath = "/srv/a/../../etc/x" }, "oldpath"},
		{"import priority still capped", "relay", func(e *event.Event) { e.Priority = event.PriorityCritical }, "priority"},
		// Without tokens: provenance refused, there is no import.
		{"anonymous fs type", "", func(e *event.Event) { e.Type = "fs.write" }, "type"},
		{"anonymous comm", "", func(e *event.Event) { e.Context.Comm = "x" }, "comm"},
		{"anonymous boundary", "", func(e *event.Event) { e.Boundary = event.BoundaryKernel }, "boundary"},
		{"anonymous critical", "", func(e *event.Event) { e.Priority = event.PriorityCritical }, ""},
		{"anonymous plain", "", nil, ""},
	} {
		ev := &event.Event{Type: "app.x", Source: "app://x", Subject: "/srv/a/x"}
		if tc.ev != nil {
			tc.ev(ev)
		}
		p := Anonymous
		if tc.token != "" {
			p = get(tc.token)
		}
		field, err := p.CheckPublish(ev)
		if field != tc.field || (err == nil) != (tc.field == "") || (err != nil && !errors.Is(err, ErrForbidden)) {
			t.Errorf("%s: token %q CheckPublish = %q, %v; want field %q", tc.name, tc.token, field, err, tc.field)
		}
	}
}

func TestMaxPriorityConfig(t *testing.T) {
	if _, err := New([]TokenSpec{{Name: "x", Token: "token-token-0123456789", Scopes: []string{"admin"}, MaxPriority: "urgent"}}); err == nil || !strings.Contains(err.Error(), "max_priority") {
		t.Errorf("max_priority urgent: New = %v, want an error naming max_priority", err)
	}
	if _, err := New([]TokenSpec{{Name: "x", Token: "token-token-0123456789", Scopes: []string{"admin"}, MaxConsumers: -1}}); err == nil || !strings.Contains(err.Error(), "max_consumers") {
		t.Errorf("max_consumers -1: New = %v, want an error naming max_consumers", err)
	}
	a, _ := New([]TokenSpec{
		{Name: "d", Token: "token-default-0123456789", Scopes: []string{"subscribe:>"}},
		{Name: "n", Token: "token-n-0123456789", Scopes: []string{"subscribe:>"}, MaxConsumers: 3},
	})
	d, _ := a.Lookup("d")
	n, _ := a.Lookup("n")
	if d.MaxConsumers() != DefaultMaxConsumers || n.MaxConsumers() != 3 {
		t.Errorf("MaxConsumers = %d, %d; want %d, 3", d.MaxConsumers(), n.MaxConsumers(), DefaultMaxConsumers)
	}
}

// A token's selectors see events as the token does: a redacted field
// cannot be probed by selecting on it.
func TestSelectSeesRedactedEvent(t *testing.T) {
	a, err := New([]TokenSpec{{Name: "r", Token: "token-token-0123456789", Scopes: []string{"subscribe:>"},
		Redact: &filter.RedactSpec{Rules: []filter.RedactRule{{Field: "comm", Action: "mask"}, {Field: "attrs.secret", Action: "drop"}}}}})
	if err != nil {
		t.Fatal(err)
	}
	p, _ := a.Lookup("r")
	ev := &event.Event{Type: "fs.write", Subject: "/x", Attrs: []event.Attr{{Key: "secret", Value: "42"}, {Key: "open", Value: "1"}}}
	ev.Context.Comm = "mkdir"
	for _, tc := range []struct {
		expr string
		want bool
	}{
		{`comm == "mkdir"`, false},
		{`comm == "***"`, true},
		{`attrs["secret"] == "42"`, false},
		{`attrs["open"] == "1"`, true},
	} {
		f, err := filter.Expr(tc.expr)
		if err != nil {
			t.Fatal(err)
		}
		if got := p.Select(f).Match(ev); got != tc.want {
			t.Errorf("Select(%s).Match = %v, want %v", tc.expr, got, tc.want)
		}
	}
	if ev.Context.Comm != "mkdir" {
		t.Errorf("Select modified the event: comm %q", ev.Context.Comm)
	}
}
