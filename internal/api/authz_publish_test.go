package api

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/auth"
)

const (
	tokPubA  = "publish-a-token-0123456789"
	tokRelay = "relay-token-0123456789abc"
)

func publishTokens(t *testing.T) *auth.Authenticator {
	t.Helper()
	a, err := auth.New([]auth.TokenSpec{
		{Name: "pub-a", Token: tokPubA, Scopes: []string{"publish:>"}, Paths: []string{"/srv/a/**"}},
		{Name: "relay", Token: tokRelay, Scopes: []string{"publish:>", "import"}, MaxPriority: "critical"},
		{Name: "boss", Token: tokBoss, Scopes: []string{"admin"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// structured builds a CloudEvents JSON object with extra members.
func structured(extra string) string {
	return `{"specversion":"1.0","id":"x1","source":"app://t","type":"app.x","subject":"/srv/a/f"` + extra + `}`
}

// TestPublishCannotForgeProvenance: publishers cannot claim what only the
// daemon observes, nor escape their paths; the import scope is for relays.
func TestPublishCannotForgeProvenance(t *testing.T) {
	tokens := newTestServer(t, Options{Auth: publishTokens(t)})
	anon := newTestServer(t, Options{})
	type req struct {
		name   string
		srv    *testServer
		token  string
		body   string
		header map[string]string // binary mode when set
		status int
		field  string
	}
	var cases []req
	forged := []struct{ name, extra, field string }{
		{"boundary", `,"boundary":"kernel"`, "boundary"},
		{"boundaries", `,"boundaries":"fuse,kernel"`, "boundaries"},
		{"comm", `,"comm":"sshd"`, "comm"},
		{"exe", `,"exe":"/usr/sbin/sshd"`, "exe"},
		{"pid", `,"pid":1`, "pid"},
		{"uid", `,"uid":0`, "uid"},
		{"daemon source", `,"source":"semprop://host/kernel"`, "source"},
		{"fs type", `,"type":"fs.write"`, "type"},
		{"semprop type", `,"type":"semprop.deadletter"`, "type"},
	}
	for _, f := range forged {
		// The later "source"/"type" member wins in the decoder; make the
		// forged one the only one.
		body := structured(f.extra)
		if strings.Contains(f.extra, `"source"`) {
			body = strings.Replace(body, `"source":"app://t",`, "", 1)
		}
		if strings.Contains(f.extra, `"type"`) {
			body = strings.Replace(body, `"type":"app.x",`, "", 1)
		}
		cases = append(cases,
			req{"token " + f.name, tokens, tokPubA, body, nil, 403, f.field},
			req{"admin " + f.name, tokens, tokBoss, body, nil, 403, f.field},
			req{"anonymous " + f.name, anon, "", body, nil, 403, f.field},
			req{"relay " + f.name, tokens, tokRelay, body, nil, 200, ""},
		)
	}
	cases = append(cases,
		req{"dot-dot escape", tokens, tokPubA, strings.Replace(structured(""), "/srv/a/f", "/srv/a/../../etc/passwd", 1), nil, 403, "subject"},
		req{"oldpath outside", tokens, tokPubA, structured(`,"oldpath":"/etc/shadow"`), nil, 403, "oldpath"},
		req{"target outside", tokens, tokPubA, structured(`,"target":"../../../etc/shadow"`), nil, 403, "target"},
		req{"priority critical", tokens, tokPubA, structured(`,"priority":"critical"`), nil, 403, "priority"},
		req{"priority high", tokens, tokPubA, structured(`,"priority":"high"`), nil, 403, "priority"},
		req{"priority critical relay", tokens, tokRelay, structured(`,"priority":"critical"`), nil, 200, ""},
		req{"plain", tokens, tokPubA, structured(""), nil, 200, ""},
		req{"batch with one forged", tokens, tokPubA, "[" + structured("") + "," + structured(`,"comm":"x"`) + "]", nil, 403, "[1].comm"},
		req{"binary comm", tokens, tokPubA, `{}`, map[string]string{"Ce-Specversion": "1.0", "Ce-Id": "b1", "Ce-Source": "app://t", "Ce-Type": "app.x", "Ce-Subject": "/srv/a/f", "Ce-Comm": "sshd"}, 403, "comm"},
		req{"binary boundary anonymous", anon, "", `{}`, map[string]string{"Ce-Specversion": "1.0", "Ce-Id": "b1", "Ce-Source": "app://t", "Ce-Type": "app.x", "Ce-Boundary": "kernel"}, 403, "boundary"},
		req{"binary fs type anonymous", anon, "", `{}`, map[string]string{"Ce-Specversion": "1.0", "Ce-Id": "b1", "Ce-Source": "app://t", "Ce-Type": "fs.write"}, 403, "type"},
	)
	for _, tc := range cases {
		ctype := event.MediaType
		if strings.HasPrefix(tc.body, "[") {
			ctype = event.MediaTypeBatch
		}
		if tc.header != nil {
			ctype = "application/json"
		}
		r, _ := http.NewRequest("POST", tc.srv.URL+"/v1/events", strings.NewReader(tc.body))
		r.Header.Set("Content-Type", ctype)
		if tc.token != "" {
			r.Header.Set("Authorization", "Bearer "+tc.token)
		}
		for k, v := range tc.header {
			r.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		var e apiError
		decodeJSON(resp, &e)
		if resp.StatusCode != tc.status || e.Field != tc.field {
			t.Errorf("%s: publish = %d field %q (%s), want %d field %q", tc.name, resp.StatusCode, e.Field, e.Error, tc.status, tc.field)
		}
	}
	// Nothing forged reached the journal of the anonymous server.
	if last := anon.m.Journal().LastSeq(); last != 0 {
		t.Errorf("anonymous server journal has %d events, want 0", last)
	}
}

// TestAfterDoesNotWrap: the largest after (or Last-Event-ID) is after
// everything, not before the first event; larger values are refused.
func TestAfterDoesNotWrap(t *testing.T) {
	ts := newTestServer(t, Options{Heartbeat: 20 * time.Millisecond})
	seed(t, ts, &event.Event{Type: "app.x", Subject: "/a"}, &event.Event{Type: "app.x", Subject: "/b"})
	const max = "18446744073709551615"
	for _, tc := range []struct {
		name, query, lastEventID string
		status, lines            int
	}{
		{"after max", "?after=" + max, "", 200, 0},
		{"Last-Event-ID max", "", max, 200, 0},
		{"after 1", "?after=1", "", 200, 1},
		{"after max+1", "?after=18446744073709551616", "", 400, -1},
		{"after negative", "?after=-1", "", 400, -1},
		{"Last-Event-ID max+1", "", "18446744073709551616", 400, -1},
	} {
		r, _ := http.NewRequest("GET", ts.URL+"/v1/events"+tc.query, nil)
		if tc.lastEventID != "" {
			r.Header.Set("Last-Event-ID", tc.lastEventID)
		}
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			n++
		}
		resp.Body.Close()
		if resp.StatusCode != tc.status || (tc.lines >= 0 && n != tc.lines) {
			t.Errorf("%s: replay = %d with %d lines, want %d with %d", tc.name, resp.StatusCode, n, tc.status, tc.lines)
		}
	}
	// The stream after the maximum sends heartbeats, never an event.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	r, _ := http.NewRequestWithContext(ctx, "GET", ts.URL+"/v1/stream", nil)
	r.Header.Set("Last-Event-ID", max)
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		// The stream's position comes first, as an id without data; an
		// event is a data line.
		if strings.HasPrefix(sc.Text(), "data:") {
			t.Fatalf("stream with Last-Event-ID %s sent %q: it wrapped to the beginning", max, sc.Text())
		}
	}
}

func decodeJSON(resp *http.Response, v any) {
	defer resp.Body.Close()
	_ = json.NewDecoder(resp.Body).Decode(v)
}
