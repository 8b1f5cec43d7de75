package api

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/semprop/semprop/client"
	"github.com/semprop/semprop/internal/propagate"
)

// TestStatus: GET /v1/status reports the journal, counters, live
// subscriptions with their queues, consumers with their lag, sections the
// daemon adds, and "cluster": null without a cluster.
func TestStatus(t *testing.T) {
	ts := newTestServer(t, Options{})
	sub, err := ts.m.Subscribe(propagate.SubscribeOptions{Name: "w1", Queue: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sub.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ts.c.CreateSubscription(ctx, client.Subscription{Name: "idx", Type: "job.*"}); err != nil {
		t.Fatal(err)
	}
	publishTypes(t, ts.m, "job.a", "x", "job.b", "x", "x", "x") // 6 events: the queue of 4 drops 2
	if _, err := ts.c.Fetch(ctx, "idx", 1, time.Second); err != nil {
		t.Fatal(err)
	}
	ts.api.AddStatus("captures", func() any { return []map[string]any{{"root": "/data", "events": 6, "overflows": 0}} })

	resp, err := http.Get(ts.URL + "/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/status = %d", resp.StatusCode)
	}
	var raw map[string]json.RawMessage
	if err := json.NewDecoder(resp.Body).Decode(&raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"version", "go_version", "started", "uptime_seconds", "journal", "ingest", "delivery",
		"subscriptions", "routes", "consumers", "cluster", "captures"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("status has no %q", k)
		}
	}
	if string(raw["cluster"]) != "null" {
		t.Errorf(`"cluster" = %s, want null without a cluster`, raw["cluster"])
	}
	var j journalStatus
	json.Unmarshal(raw["journal"], &j)
	if j.FirstSeq != 1 || j.LastSeq != 6 || j.DurableSeq != 6 || j.Segments < 1 || j.Bytes <= 0 {
		t.Errorf("journal = %+v, want seqs 1..6 durable, a segment, bytes", j)
	}
	var ingest struct {
		Published uint64  `json:"published"`
		PerSecond float64 `json:"per_second"`
	}
	json.Unmarshal(raw["ingest"], &ingest)
	if ingest.Published != 6 || ingest.PerSecond <= 0 {
		t.Errorf("ingest = %+v, want 6 published at a rate above 0", ingest)
	}
	var subs []subscriptionStatus
	json.Unmarshal(raw["subscriptions"], &subs)
	if len(subs) != 1 || subs[0].Name != "w1" || subs[0].Depth != 4 || subs[0].Capacity != 4 || subs[0].Dropped != 2 {
		t.Errorf("subscriptions = %+v, want w1 with 4 queued of 4 and 2 dropped", subs)
	}
	var cons []consumerStatus
	json.Unmarshal(raw["consumers"], &cons)
	want := consumerStatus{Name: "idx", Open: true, Cursor: 1, Lag: 5, Pending: 1}
	if len(cons) != 1 || cons[0] != want {
		t.Errorf("consumers = %+v, want [%+v]", cons, want)
	}
	var caps []map[string]any
	if json.Unmarshal(raw["captures"], &caps); len(caps) != 1 || caps[0]["root"] != "/data" {
		t.Errorf("captures = %s, want the added section", raw["captures"])
	}

	// The Go client decodes the same.
	st, err := ts.c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Journal.DurableSeq != 6 || len(st.Consumers) != 1 || st.Consumers[0].Lag != 5 || st.Version == "" ||
		len(st.Subscriptions) != 1 || st.Subscriptions[0].Dropped != 2 || st.Ingest.Published != 6 {
		t.Errorf("client Status = %+v", st)
	}
	if _, ok := st.Sections["captures"]; !ok {
		t.Errorf("client Status sections = %v, want captures", st.Sections)
	}
	if st.Cluster != nil {
		t.Errorf("client Status cluster = %s, want none", st.Cluster)
	}
}

func TestStatusNeedsAdmin(t *testing.T) {
	ts := authServer(t)
	for _, tc := range []struct {
		token  string
		status int
	}{
		{"", http.StatusUnauthorized},
		{tokSub, http.StatusForbidden},
		{tokAdmin, http.StatusOK},
	} {
		if status, e, _ := do(t, "GET", ts.URL+"/v1/status", tc.token, "", ""); status != tc.status {
			t.Errorf("GET /v1/status with token %q = %d %+v, want %d", tc.token, status, e, tc.status)
		}
	}
}

func TestAddStatusRefusesBuiltins(t *testing.T) {
	ts := newTestServer(t, Options{})
	defer func() {
		if recover() == nil {
			t.Error("AddStatus(journal) did not panic")
		}
	}()
	ts.api.AddStatus("journal", func() any { return nil })
}
