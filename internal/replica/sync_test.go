package replica

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/semprop/semprop/event"
)

// getState calls GET /v1/state on in.
func getState(t testing.TB, in *instance, q url.Values, header http.Header) (int, StateResponse, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, in.url+"/v1/state?"+q.Encode(), nil)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var sr StateResponse
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&sr); err != nil {
			t.Fatal(err)
		}
	}
	return resp.StatusCode, sr, resp.Header
}

func TestPartitionConflictHeal(t *testing.T) {
	is, nw := newInstances(t, clusterOpts{n: 3})
	a, b, c := is[0], is[1], is[2]
	files := map[string]string{}
	for i := range 50 {
		files[fmt.Sprintf("dir/f%02d.txt", i)] = fmt.Sprintf("h%d", i)
	}
	a.write(t, event.TypeCreate, files)
	waitConverged(t, is, 50, 5*time.Second)

	nw.partition([]*instance{a}, []*instance{b, c})
	quiesce(t, is)
	a.write(t, event.TypeWrite, map[string]string{"dir/f01.txt": "from-a"})
	b.write(t, event.TypeWrite, map[string]string{"dir/f01.txt": "from-b"})
	c.write(t, event.TypeDelete, map[string]string{"dir/f02.txt": ""})
	// Each side converges on its own and sees no conflict yet.
	waitConverged(t, []*instance{b, c}, 50, 5*time.Second)
	if _, sr, _ := getState(t, b, url.Values{"conflicts": {"true"}}, nil); len(sr.Entries) != 0 {
		t.Fatalf("conflicts during the partition on b: %+v", sr.Entries)
	}
	time.Sleep(300 * time.Millisecond) // rounds fail across the partition
	if vs := a.snapshot().Get(Key{"docs", "dir/f02.txt"}); len(vs) != 1 || vs[0].Deleted {
		t.Fatalf("a saw c's delete through the partition: %+v", vs)
	}

	nw.heal()
	took := waitConverged(t, is, -1, 5*time.Second)
	t.Logf("healed and converged in %v", took)
	for _, in := range is {
		_, sr, _ := getState(t, in, url.Values{"conflicts": {"true"}}, nil)
		if len(sr.Entries) != 1 || sr.Entries[0].Path != "dir/f01.txt" || !sr.Entries[0].Conflict || len(sr.Entries[0].Versions) != 2 {
			t.Fatalf("%s: conflicts = %+v, want dir/f01.txt with both versions", in.name, sr.Entries)
		}
		hashes := map[string]bool{}
		for _, v := range sr.Entries[0].Versions {
			hashes[v.Hash] = true
		}
		if !hashes["from-a"] || !hashes["from-b"] {
			t.Fatalf("%s: conflict versions %+v, want from-a and from-b", in.name, sr.Entries[0].Versions)
		}
		_, sr, _ = getState(t, in, url.Values{"path": {"dir/f02.txt"}, "deleted": {"true"}}, nil)
		if len(sr.Entries) > 1 || len(sr.Entries) == 1 && !sr.Entries[0].Deleted { // or collected already
			t.Fatalf("%s: f02 = %+v, want deleted", in.name, sr.Entries)
		}
		_, sr, _ = getState(t, in, url.Values{"path": {"dir/*"}}, nil)
		if len(sr.Entries) != 49 {
			t.Fatalf("%s: %d live entries, want 49", in.name, len(sr.Entries))
		}
	}

	// A change made after seeing both versions resolves the conflict.
	c.write(t, event.TypeWrite, map[string]string{"dir/f01.txt": "merged"})
	waitApplied(t, c)
	waitConverged(t, is, 49, 5*time.Second) // f02's tombstone collected
	for _, in := range is {
		_, sr, _ := getState(t, in, url.Values{"path": {"dir/f01.txt"}}, nil)
		if len(sr.Entries) != 1 || sr.Entries[0].Conflict || len(sr.Entries[0].Versions) != 1 || sr.Entries[0].Versions[0].Hash != "merged" {
			t.Fatalf("%s: f01 after resolution = %+v", in.name, sr.Entries)
		}
	}
}

func TestTombstonesCollectedWhenAllAcknowledged(t *testing.T) {
	is, nw := newInstances(t, clusterOpts{n: 3})
	a := is[0]
	a.write(t, event.TypeCreate, map[string]string{"x": "1", "y": "2"})
	waitConverged(t, is, 2, 5*time.Second)
	nw.partition([]*instance{a, is[1]}, []*instance{is[2]})
	quiesce(t, is)
	a.write(t, event.TypeDelete, map[string]string{"x": ""})
	time.Sleep(500 * time.Millisecond)
	if a.snapshot().Tombstones() != 1 {
		t.Fatalf("a collected the tombstone while n2 had not acknowledged it")
	}
	nw.heal()
	deadline := time.Now().Add(5 * time.Second)
	for !converged(is, 1) {
		if time.Now().After(deadline) {
			t.Fatalf("tombstone not collected everywhere: %d %d %d keys", is[0].snapshot().Len(), is[1].snapshot().Len(), is[2].snapshot().Len())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestGossipLearnsPeers(t *testing.T) {
	is, _ := newInstances(t, clusterOpts{n: 3, config: func(i int, c *Config) {
		c.Gossip = []string{"127.0.0.1:*"}
		if i == 2 { // n2 knows only n0; n1 knows nobody
			c.Peers = c.Peers[:1]
		}
		if i == 1 {
			c.Peers = nil
		}
	}})
	is[1].write(t, event.TypeCreate, map[string]string{"from-n1": "h"})
	waitConverged(t, is, 1, 5*time.Second)
	for _, in := range is {
		if got := len(in.r.peerURLs()); got != 2 {
			t.Errorf("%s knows %d peers, want 2: %v", in.name, got, in.r.peerURLs())
		}
	}
}

func TestStrongRefusedOutsideCluster(t *testing.T) {
	is, _ := newInstances(t, clusterOpts{n: 1})
	code, _, _ := getState(t, is[0], url.Values{"consistency": {"strong"}}, nil)
	if code != http.StatusBadRequest {
		t.Fatalf("strong read without a cluster: status %d, want 400", code)
	}
	if code, _, _ := getState(t, is[0], url.Values{"consistency": {"bogus"}}, nil); code != http.StatusBadRequest {
		t.Fatalf("unknown consistency: status %d, want 400", code)
	}
}

func TestRestartResumesFromCheckpoint(t *testing.T) {
	is, _ := newInstances(t, clusterOpts{n: 1})
	in := is[0]
	in.write(t, event.TypeCreate, map[string]string{"a": "1"})
	waitApplied(t, in)
	in.stop()
	r2, err := New(in.r.opts)
	if err != nil {
		t.Fatal(err)
	}
	if !stateOf(r2).Equal(in.snapshot()) || r2.Applied() != in.r.Applied() {
		t.Fatalf("reloaded catalog differs: %v vs %v", dump(stateOf(r2)), dump(in.snapshot()))
	}
	in.r = r2
	in.start(t)
	in.write(t, event.TypeWrite, map[string]string{"a": "2"})
	waitApplied(t, in)
	if vs := in.snapshot().Get(Key{"docs", "a"}); len(vs) != 1 || vs[0].Hash != "2" {
		t.Fatalf("after restart: %+v", vs)
	}
}

func stateOf(r *Replica) *State {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.state.Clone()
}

func waitApplied(t testing.TB, in *instance) {
	t.Helper()
	want := in.m.Journal().LastSeq()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for in.r.Applied() < want {
		if ctx.Err() != nil {
			t.Fatalf("%s applied %d, want %d", in.name, in.r.Applied(), want)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestJournalBehindCheckpointRefused(t *testing.T) {
	is, _ := newInstances(t, clusterOpts{n: 1, noStart: true})
	r := is[0].r
	r.applied = 100 // as if loaded from a checkpoint of a journal since reset
	r.opts.LastSeq = is[0].m.Journal().LastSeq
	err := r.Run(t.Context())
	if !errors.Is(err, ErrConfig) {
		t.Fatalf("Run with the journal behind the checkpoint = %v, want ErrConfig", err)
	}
}

// TestChunkedTransfersBothWays: with tiny chunks, instances far behind
// pull pages while the one ahead pushes pages to them, at once; every
// catalog must end whole (a transfer must never adopt a summary without
// all of its pages).
func TestChunkedTransfersBothWays(t *testing.T) {
	is, nw := newInstances(t, clusterOpts{n: 3, config: func(i int, c *Config) {
		c.FullAfter, c.ChunkSize, c.Interval = 10, 7, 20*time.Millisecond
	}})
	nw.partition(is[:1], is[1:])
	files := map[string]string{}
	for i := range 300 {
		files[fmt.Sprintf("d/f%03d", i)] = fmt.Sprint(i)
	}
	is[0].write(t, event.TypeCreate, files)
	waitApplied(t, is[0])
	nw.heal()
	waitConverged(t, is, 300, 10*time.Second)
	var chunks uint64
	for _, in := range is {
		chunks += in.r.met.chunksSent.Load() + in.r.met.chunksReceived.Load()
	}
	if chunks == 0 {
		t.Fatal("no chunked transfer happened")
	}
}
