package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/semprop/semprop/client"
	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/auth"
	"github.com/semprop/semprop/internal/propagate"
)

const (
	tokAlice = "alice-token-0123456789ab"
	tokBob   = "bob-token-0123456789abcd"
	tokBoss  = "boss-token-0123456789abc"
)

func consumerTokens(t *testing.T, maxConsumers int) *auth.Authenticator {
	t.Helper()
	a, err := auth.New([]auth.TokenSpec{
		{Name: "alice", Token: tokAlice, Scopes: []string{"subscribe:>"}, MaxConsumers: maxConsumers},
		{Name: "bob", Token: tokBob, Scopes: []string{"subscribe:job.>"}, MaxConsumers: maxConsumers},
		{Name: "boss", Token: tokBoss, Scopes: []string{"admin"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func status(err error) int {
	if err == nil {
		return 0
	}
	if e, ok := err.(*client.Error); ok {
		return e.Status
	}
	return -1
}

// Consumer names are per token: another token's consumer is neither a
// conflict (409) nor visible (403) to anyone but its owner and admins.
func TestConsumerNamesDoNotLeak(t *testing.T) {
	ts := newTestServer(t, Options{Auth: consumerTokens(t, 0)})
	seed(t, ts, &event.Event{Type: "app.x", Subject: "/a"}, &event.Event{Type: "job.run", Subject: "/j"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	alice, bob, boss := client.New(ts.URL, tokAlice), client.New(ts.URL, tokBob), client.New(ts.URL, tokBoss)

	if err := alice.CreateSubscription(ctx, client.Subscription{Name: "jobs"}); err != nil {
		t.Fatal(err)
	}
	if err := alice.CreateSubscription(ctx, client.Subscription{Name: "only-alice"}); err != nil {
		t.Fatal(err)
	}
	if err := alice.CreateSubscription(ctx, client.Subscription{Name: "jobs"}); status(err) != 409 {
		t.Errorf("alice creates her own jobs again = %v, want 409", err)
	}
	// Bob's "jobs" is his own: no 409 telling him alice has one.
	if err := bob.CreateSubscription(ctx, client.Subscription{Name: "jobs"}); err != nil {
		t.Fatalf("bob creates jobs while alice has one = %v, want created", err)
	}
	// Each fetches its own.
	for _, tc := range []struct {
		c    *client.Client
		who  string
		want int
	}{{alice, "alice", 2}, {bob, "bob", 1}} {
		ds, err := tc.c.Fetch(ctx, "jobs", 10, 200*time.Millisecond)
		if err != nil || len(ds) != tc.want {
			t.Errorf("%s fetches jobs = %d deliveries, %v; want %d (her/his own consumer)", tc.who, len(ds), err, tc.want)
		}
	}
	// Alice's other consumer does not exist for bob, whatever he does.
	if _, err := bob.Fetch(ctx, "only-alice", 1, 0); status(err) != 404 {
		t.Errorf("bob fetches only-alice = %v, want 404", err)
	}
	if err := bob.Ack(ctx, "only-alice", 1); status(err) != 404 {
		t.Errorf("bob acks only-alice = %v, want 404", err)
	}
	if err := bob.DeleteSubscription(ctx, "only-alice"); status(err) != 404 {
		t.Errorf("bob deletes only-alice = %v, want 404", err)
	}
	if _, err := bob.Fetch(ctx, "never-was", 1, 0); status(err) != 404 {
		t.Errorf("bob fetches never-was = %v, want 404 like only-alice", err)
	}
	// Lists show each token its own.
	names := func(token string) string {
		var body struct {
			Subscriptions []struct {
				Name string       `json:"name"`
				Spec consumerSpec `json:"spec"`
			} `json:"subscriptions"`
		}
		code, raw := rawGet(t, ts.URL+"/v1/subscriptions", token)
		if code != 200 {
			t.Fatalf("list = %d %s", code, raw)
		}
		json.Unmarshal(raw, &body)
		s := ""
		for _, it := range body.Subscriptions {
			s += it.Name + "@" + it.Spec.Owner + " "
		}
		return s
	}
	if got := names(tokBob); got != "jobs@bob " {
		t.Errorf("bob lists %q, want only his jobs", got)
	}
	// Admin: a unique name resolves; an ambiguous one needs ?owner=.
	if _, err := boss.Fetch(ctx, "only-alice", 1, 0); err != nil {
		t.Errorf("admin fetches only-alice = %v, want allowed", err)
	}
	if _, err := boss.Fetch(ctx, "jobs", 1, 0); status(err) != 409 {
		t.Errorf("admin fetches jobs that two tokens have = %v, want 409 asking for ?owner=", err)
	}
	if code, raw := rawPost(t, ts.URL+"/v1/subscriptions/jobs/fetch?owner=bob&wait=0s", tokBoss); code != 200 {
		t.Errorf("admin fetches bob's jobs with ?owner=bob = %d %s, want 200", code, raw)
	}
	// Bob deleting his jobs leaves alice's.
	if err := bob.DeleteSubscription(ctx, "jobs"); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Fetch(ctx, "jobs", 1, 0); err != nil {
		t.Errorf("alice fetches jobs after bob deleted his = %v", err)
	}
}

// Ownership follows the token's name: reordering the tokens in the
// configuration hands nobody another token's consumers.
func TestConsumerOwnershipSurvivesReorder(t *testing.T) {
	ts := newTestServer(t, Options{Auth: consumerTokens(t, 0)})
	seed(t, ts, &event.Event{Type: "job.run", Subject: "/j"})
	ctx := context.Background()
	if err := client.New(ts.URL, tokAlice).CreateSubscription(ctx, client.Subscription{Name: "mine"}); err != nil {
		t.Fatal(err)
	}
	// A second server over the same manager, tokens in the reverse order.
	a, err := auth.New([]auth.TokenSpec{
		{Name: "boss", Token: tokBoss, Scopes: []string{"admin"}},
		{Name: "bob", Token: tokBob, Scopes: []string{"subscribe:job.>"}},
		{Name: "alice", Token: tokAlice, Scopes: []string{"subscribe:>"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	ts.api.cons.mu.Lock()
	for _, c := range ts.api.cons.open {
		c.Close()
	}
	ts.api.cons.mu.Unlock()
	s2 := New(Options{Manager: ts.m, Logger: quiet, Auth: a})
	s2.SetReady(true, "")
	hs := httptest.NewServer(s2)
	t.Cleanup(func() { s2.Close(); hs.Close() })
	if _, err := client.New(hs.URL, tokBob).Fetch(ctx, "mine", 1, 0); status(err) != 404 {
		t.Errorf("bob fetches alice's consumer after reordering = %v, want 404", err)
	}
	if ds, err := client.New(hs.URL, tokAlice).Fetch(ctx, "mine", 1, 200*time.Millisecond); err != nil || len(ds) != 1 {
		t.Errorf("alice fetches her consumer after reordering = %d, %v; want 1 delivery", len(ds), err)
	}
}

func TestMaxConsumersPerToken(t *testing.T) {
	ts := newTestServer(t, Options{Auth: consumerTokens(t, 2)})
	ctx := context.Background()
	alice, bob := client.New(ts.URL, tokAlice), client.New(ts.URL, tokBob)
	for i := range 2 {
		if err := alice.CreateSubscription(ctx, client.Subscription{Name: fmt.Sprint("c", i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := alice.CreateSubscription(ctx, client.Subscription{Name: "c2"}); status(err) != 403 {
		t.Errorf("third consumer with max_consumers 2 = %v, want 403", err)
	}
	// The cap is per token.
	if err := bob.CreateSubscription(ctx, client.Subscription{Name: "c0"}); err != nil {
		t.Errorf("bob's first consumer = %v, want created", err)
	}
	if err := alice.DeleteSubscription(ctx, "c0"); err != nil {
		t.Fatal(err)
	}
	if err := alice.CreateSubscription(ctx, client.Subscription{Name: "c2"}); err != nil {
		t.Errorf("after deleting one, creating = %v, want created", err)
	}
}

// A reader that never acks makes dead letters, not journal records: they
// are in its consumer's listing, bounded.
func TestDeadLettersDoNotGrowJournal(t *testing.T) {
	ts := newTestServer(t, Options{Auth: consumerTokens(t, 0)})
	const n = 30
	evs := make([]*event.Event, n)
	for i := range evs {
		evs[i] = &event.Event{Type: "job.run", Subject: fmt.Sprint("/j/", i)}
	}
	seed(t, ts, evs...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	bob := client.New(ts.URL, tokBob)
	if err := bob.CreateSubscription(ctx, client.Subscription{Name: "never-acks", AckWait: "1ms", MaxDeliver: 1}); err != nil {
		t.Fatal(err)
	}
	type listing struct {
		Subscriptions []struct {
			DeadLetters []propagate.DeadLetter `json:"dead_letters"`
			Info        propagate.ConsumerInfo `json:"info"`
		} `json:"subscriptions"`
	}
	var l listing
	for len(l.Subscriptions) == 0 || l.Subscriptions[0].Info.DeadLettered < n {
		if ctx.Err() != nil {
			t.Fatalf("not all %d events dead-lettered in time: %+v", n, l)
		}
		_, _ = bob.Fetch(ctx, "never-acks", 1000, 20*time.Millisecond)
		code, raw := rawGet(t, ts.URL+"/v1/subscriptions", tokBob)
		if code != 200 {
			t.Fatalf("list = %d %s", code, raw)
		}
		l = listing{}
		json.Unmarshal(raw, &l)
	}
	if last := ts.m.Journal().LastSeq(); last != n {
		t.Errorf("journal last seq = %d after %d dead letters, want %d: a reader wrote to the journal", last, n, n)
	}
	if dl := l.Subscriptions[0].DeadLetters; len(dl) != n || dl[0].Seq != 1 || dl[0].Type != "job.run" {
		t.Errorf("listed dead letters = %d (first %+v), want %d from seq 1", len(dl), dl, n)
	}
}

func rawDo(t *testing.T, method, url, token string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func rawGet(t *testing.T, url, token string) (int, []byte)  { return rawDo(t, "GET", url, token) }
func rawPost(t *testing.T, url, token string) (int, []byte) { return rawDo(t, "POST", url, token) }
