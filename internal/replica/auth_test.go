package replica

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/auth"
	"github.com/semprop/semprop/internal/filter"
)

const (
	tokAdmin  = "admin-token-0123456789abcdef"
	tokReader = "reader-token-0123456789abcdef"
	tokApp    = "app-token-0123456789abcdef01"
)

func TestStateRespectsTokens(t *testing.T) {
	a, err := auth.New([]auth.TokenSpec{
		{Name: "admin", Token: tokAdmin, Scopes: []string{"admin"}},
		{Name: "reader", Token: tokReader, Scopes: []string{"subscribe:fs.>"}, Paths: []string{"/srv/n0/pub/**"}, Deny: []string{"**/*.key"},
			Redact: &filter.RedactSpec{Rules: []filter.RedactRule{{Field: "uid", Action: "drop"}}}},
		{Name: "app", Token: tokApp, Scopes: []string{"subscribe:app.>"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	is, _ := newInstances(t, clusterOpts{n: 2, auth: a, config: func(i int, c *Config) { c.Token = tokAdmin }})
	is[1].write(t, event.TypeCreate, map[string]string{"pub/a.txt": "1", "pub/secret.key": "2", "private/b.txt": "3"})
	waitConverged(t, is, 3, 5*time.Second) // peers authenticate with the admin token

	get := func(tok string) (int, StateResponse) {
		req, _ := http.NewRequest(http.MethodGet, is[0].url+"/v1/state", nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var sr StateResponse
		if resp.StatusCode == http.StatusOK {
			_ = json.NewDecoder(resp.Body).Decode(&sr)
		}
		return resp.StatusCode, sr
	}
	if code, _ := get(""); code != http.StatusUnauthorized {
		t.Errorf("no token: status %d, want 401", code)
	}
	if code, _ := get(tokApp); code != http.StatusOK {
		t.Errorf("app token: status %d, want 200 (and nothing in it)", code)
	} else if _, sr := get(tokApp); len(sr.Entries) != 0 {
		t.Errorf("a token without fs scopes sees %+v", sr.Entries)
	}
	code, sr := get(tokReader)
	if code != http.StatusOK || len(sr.Entries) != 1 || sr.Entries[0].Path != "pub/a.txt" {
		t.Fatalf("reader: %d %+v, want only pub/a.txt", code, sr.Entries)
	}
	if uid := sr.Entries[0].Versions[0].UID; uid != 0 {
		t.Errorf("reader sees uid %d, which its redaction drops", uid)
	}
	if _, sr := get(tokAdmin); len(sr.Entries) != 3 || sr.Entries[0].Versions[0].UID != 1000 {
		t.Errorf("admin: %+v, want all three with uid 1000", sr.Entries)
	}
	// A reader may not run exchanges: they are for peers (sync scope).
	req, _ := http.NewRequest(http.MethodPost, is[0].url+syncPath, nil)
	req.Header.Set("Authorization", "Bearer "+tokReader)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("reader exchange: status %d, want 403", resp.StatusCode)
	}
}

// TestSyncScope: peers sync with a token that holds only the sync scope;
// that token may not read the state or the sync status, which need a
// subscribe scope and admin.
func TestSyncScope(t *testing.T) {
	const tokPeer = "peer-token-0123456789abcdef01"
	a, err := auth.New([]auth.TokenSpec{
		{Name: "admin", Token: tokAdmin, Scopes: []string{"admin"}},
		{Name: "peer", Token: tokPeer, Scopes: []string{"sync"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	is, _ := newInstances(t, clusterOpts{n: 2, auth: a, config: func(i int, c *Config) { c.Token = tokPeer }})
	is[1].write(t, event.TypeCreate, map[string]string{"a.txt": "1", "b.txt": "2"})
	waitConverged(t, is, 2, 5*time.Second)
	for _, path := range []string{"/v1/state", "/v1/sync"} {
		req, _ := http.NewRequest(http.MethodGet, is[0].url+path, nil)
		req.Header.Set("Authorization", "Bearer "+tokPeer)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("GET %s with the sync-only token: status %d, want 403", path, resp.StatusCode)
		}
	}
}
