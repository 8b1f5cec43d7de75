package auth

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http/httptest"
	"testing"

	"github.com/semprop/semprop/event"
)

func TestAuthenticate(t *testing.T) {
	secret := "hashed-secret-0123456789"
	sum := sha256.Sum256([]byte(secret))
	a, err := New([]TokenSpec{
		{Name: "plain", Token: "plain-secret-0123456789", Scopes: []string{"subscribe:>"}},
		{Name: "hashed", SHA256: hex.EncodeToString(sum[:]), Scopes: []string{"admin"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		header, query, want string
		err                 error
	}{
		{"Bearer plain-secret-0123456789", "", "plain", nil},
		{"Bearer " + secret, "", "hashed", nil},
		{"", "plain-secret-0123456789", "", ErrUnauthenticated}, // ?token= only on streams
		{"Bearer wrong-secret-000000000", "", "", ErrUnauthenticated},
		{"Basic plain-secret-0123456789", "", "", ErrUnauthenticated},
		{"", "", "", ErrUnauthenticated},
	} {
		r := httptest.NewRequest("GET", "/v1/events?token="+tc.query, nil)
		if tc.header != "" {
			r.Header.Set("Authorization", tc.header)
		}
		p, err := a.Authenticate(r)
		if !errors.Is(err, tc.err) || (err == nil && p.Name != tc.want) {
			t.Errorf("Authenticate(%q, ?token=%q) = %v, %v; want %s, %v", tc.header, tc.query, p, err, tc.want, tc.err)
		}
	}
	if p, ok := a.Lookup("hashed"); !ok || !p.Admin() {
		t.Errorf("Lookup(hashed) = %v, %v", p, ok)
	}
	var none *Authenticator
	if p, err := none.Authenticate(httptest.NewRequest("GET", "/", nil)); err != nil || p != Anonymous {
		t.Errorf("no tokens: Authenticate = %v, %v; want Anonymous", p, err)
	}
}

func TestPrincipalChecks(t *testing.T) {
	a, err := New([]TokenSpec{{Name: "t", Token: "token-token-0123456789", Scopes: []string{"publish:app.*", "subscribe:fs.>"}, Paths: []string{"/data/**"}, Deny: []string{"**/*.key"}}})
	if err != nil {
		t.Fatal(err)
	}
	p, _ := a.Lookup("t")
	for _, tc := range []struct {
		typ, subject, field string
	}{
		{"app.x", "/data/a", ""},
		{"app.x.y", "/data/a", "type"},
		{"app.x", "/etc/a", "subject"},
		{"app.x", "", "subject"},
	} {
		field, err := p.CheckPublish(&event.Event{Type: tc.typ, Subject: tc.subject})
		if field != tc.field || (err == nil) != (tc.field == "") {
			t.Errorf("CheckPublish(%s %s) = %q, %v; want field %q", tc.typ, tc.subject, field, err, tc.field)
		}
	}
	for _, tc := range []struct {
		typ, subject, oldpath string
		want                  bool
	}{
		{"fs.write", "/data/a.md", "", true},
		{"fs.write", "/data/k.key", "", false},
		{"fs.rename", "/data/a.md", "/data/old.key", false},
		{"fs.write", "/srv/a.md", "", false},
		{"app.x", "/data/a.md", "", false},
	} {
		ev := &event.Event{Type: tc.typ, Subject: tc.subject}
		ev.Context.OldPath = tc.oldpath
		if got := p.Match(ev); got != tc.want {
			t.Errorf("Match(%s %s from %q) = %v, want %v", tc.typ, tc.subject, tc.oldpath, got, tc.want)
		}
	}
}

func TestSyncScopeParse(t *testing.T) {
	a, err := New([]TokenSpec{{Name: "peer", Token: "peer-secret-0123456789abcdef", Scopes: []string{"sync"}}, {Name: "adm", Token: "adm-secret-0123456789abcdef01", Scopes: []string{"admin"}}})
	if err != nil {
		t.Fatal(err)
	}
	peer, _ := a.Lookup("peer")
	adm, _ := a.Lookup("adm")
	if !peer.CanSync() || peer.Admin() || peer.CanSubscribeAny() || peer.CanPublishAny() {
		t.Errorf("sync scope: CanSync %v Admin %v Subscribe %v Publish %v; want sync only", peer.CanSync(), peer.Admin(), peer.CanSubscribeAny(), peer.CanPublishAny())
	}
	if !adm.CanSync() || !Anonymous.CanSync() {
		t.Error("admin and anonymous callers may sync too")
	}
	if _, err := New([]TokenSpec{{Name: "x", Token: "x-secret-0123456789abcdef0123", Scopes: []string{"sync:fs.>"}}}); err == nil {
		t.Error("sync:PATTERN accepted; the sync scope takes no pattern")
	}
}

// TestRedactPathsOutside: a token limited to paths sees a rename into
// them from outside without the outside path, and a symlink to outside
// without its target; the stored event is not modified.
func TestRedactPathsOutside(t *testing.T) {
	a, err := New([]TokenSpec{
		{Name: "t", Token: "token-token-0123456789", Scopes: []string{"subscribe:fs.>"}, Paths: []string{"/data/**"}},
		{Name: "all", Token: "token-token-all-0123456789", Scopes: []string{"subscribe:fs.>"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	p, _ := a.Lookup("t")
	all, _ := a.Lookup("all")
	for _, tc := range []struct {
		oldpath, target     string
		wantOld, wantTarget string
		wantSame            bool
	}{
		{"/secret/plan.txt", "", "", "", false},
		{"/data/b.md", "", "/data/b.md", "", true},
		{"", "/etc/shadow", "", "", false},
		{"", "/data/real.md", "", "/data/real.md", true},
	} {
		ev := &event.Event{Type: "fs.rename", Subject: "/data/a.md"}
		ev.Context.OldPath, ev.Context.Target = tc.oldpath, tc.target
		if !p.Match(ev) {
			t.Fatalf("the event into /data is not shown: %+v", ev)
		}
		out := p.Redact(ev)
		if out.Context.OldPath != tc.wantOld || out.Context.Target != tc.wantTarget || (out == ev) != tc.wantSame {
			t.Errorf("Redact(oldpath %q, target %q) = oldpath %q, target %q (same %v); want %q, %q (same %v)",
				tc.oldpath, tc.target, out.Context.OldPath, out.Context.Target, out == ev, tc.wantOld, tc.wantTarget, tc.wantSame)
		}
		if ev.Context.OldPath != tc.oldpath || ev.Context.Target != tc.target {
			t.Errorf("Redact modified the stored event: %+v", ev.Context)
		}
		if got := all.Redact(ev); got != ev {
			t.Errorf("a token without paths got a copy")
		}
	}
}
