package enrich

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/semprop/semprop/event"
)

func writeEvent(p string) *event.Event { return &event.Event{Type: event.TypeWrite, Subject: p} }

// TestContentFacts writes crafted files and checks every fact.
func TestContentFacts(t *testing.T) {
	root := t.TempDir()
	rec := &recorder{}
	p := newTestPublisher(t, Options{Next: rec, Root: root, Counts: true})
	f := filepath.Join(root, "notes.txt")
	text := "hello world\nsecond line here\nno newline"
	writeFile(t, f, text)

	publish(t, p, writeEvent(f))
	ev := rec.take()[0]
	if got := attr(ev, AttrMime); got != "text/plain" {
		t.Errorf("mime = %q, want text/plain", got)
	}
	if got := attr(ev, AttrHash); len(got) != 32 {
		t.Errorf("hash = %q, want 32 hex digits (xxh3-128)", got)
	}
	for _, k := range []string{AttrChanged, AttrPrevSize, AttrPrevEntropy, AttrMimeChanged, AttrEnrich} {
		if v, ok := ev.Attr(k); ok {
			t.Errorf("first sight: %s = %q, want absent", k, v)
		}
	}
	if got := attr(ev, AttrLines); got != "3" {
		t.Errorf("lines = %q, want 3", got)
	}
	if got := attr(ev, AttrWords); got != "7" {
		t.Errorf("words = %q, want 7", got)
	}
	if e, _ := strconv.ParseFloat(attr(ev, AttrEntropy), 64); e < 2 || e > 5 {
		t.Errorf("entropy of text = %v, want between 2 and 5", e)
	}
	if !ev.Context.Has(event.HasSize) || ev.Context.Size != int64(len(text)) {
		t.Errorf("size = %d (known %v), want %d", ev.Context.Size, ev.Context.Has(event.HasSize), len(text))
	}
	hash1 := attr(ev, AttrHash)

	// An identical rewrite: changed=false.
	writeFile(t, f, text)
	publish(t, p, writeEvent(f))
	ev = rec.take()[0]
	if got := attr(ev, AttrChanged); got != "false" {
		t.Errorf("identical rewrite: changed = %q, want false", got)
	}
	if got := attr(ev, AttrHash); got != hash1 {
		t.Errorf("identical rewrite: hash = %q, want %q", got, hash1)
	}

	// Random bytes over the text: changed, high entropy, another type.
	noise := make([]byte, 300<<10)
	rand.Read(noise)
	if err := os.WriteFile(f, noise, 0o644); err != nil {
		t.Fatal(err)
	}
	publish(t, p, writeEvent(f))
	ev = rec.take()[0]
	want := map[string]string{AttrChanged: "true", AttrPrevSize: strconv.Itoa(len(text)), AttrMimeChanged: "true", AttrMime: "application/octet-stream"}
	for k, v := range want {
		if got := attr(ev, k); got != v {
			t.Errorf("noise: %s = %q, want %q", k, got, v)
		}
	}
	if e, _ := strconv.ParseFloat(attr(ev, AttrEntropy), 64); e <= 7.9 {
		t.Errorf("noise: entropy = %v, want > 7.9", e)
	}
	if pe, _ := strconv.ParseFloat(attr(ev, AttrPrevEntropy), 64); pe > 5 {
		t.Errorf("noise: preventropy = %v, want the text's", pe)
	}
	if _, ok := ev.Attr(AttrLines); ok {
		t.Errorf("noise: lines set on a binary file")
	}
	if st := p.Stats(); st.Enriched != 3 || st.Unchanged != 1 || st.Bytes != uint64(2*len(text)+len(noise)) {
		t.Errorf("Stats = %+v, want 3 enriched, 1 unchanged, %d bytes", st, 2*len(text)+len(noise))
	}
}

// TestSHA256 checks the hash against crypto/sha256.
func TestSHA256(t *testing.T) {
	root := t.TempDir()
	rec := &recorder{}
	p := newTestPublisher(t, Options{Next: rec, Root: root, Hash: HashSHA256})
	f := filepath.Join(root, "a")
	data := strings.Repeat("semprop ", 50000) // several chunks
	writeFile(t, f, data)
	publish(t, p, writeEvent(f))
	sum := sha256.Sum256([]byte(data))
	if got, want := attr(rec.take()[0], AttrHash), hex.EncodeToString(sum[:]); got != want {
		t.Errorf("hash = %s, want %s", got, want)
	}
}

// TestRestartKeepsChanged: the index outlives the Publisher.
func TestRestartKeepsChanged(t *testing.T) {
	root, dir := t.TempDir(), t.TempDir()
	f := filepath.Join(root, "a.txt")
	writeFile(t, f, "version one\n")
	rec := &recorder{}
	p, err := New(Options{Next: rec, Root: root, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	publish(t, p, writeEvent(f))
	if err := p.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	rec.take()

	p = newTestPublisher(t, Options{Next: rec, Root: root, Dir: dir})
	publish(t, p, writeEvent(f))
	if got := attr(rec.take()[0], AttrChanged); got != "false" {
		t.Errorf("after restart, same content: changed = %q, want false", got)
	}
	writeFile(t, f, "version two\n")
	publish(t, p, writeEvent(f))
	if got := attr(rec.take()[0], AttrChanged); got != "true" {
		t.Errorf("after restart, new content: changed = %q, want true", got)
	}
}

// TestCorruptIndexIsEmpty: garbage in the index file is an empty index.
func TestCorruptIndexIsEmpty(t *testing.T) {
	root, dir := t.TempDir(), t.TempDir()
	writeFile(t, filepath.Join(dir, indexFile), "garbage that is no index")
	f := filepath.Join(root, "a")
	writeFile(t, f, "x")
	rec := &recorder{}
	p := newTestPublisher(t, Options{Next: rec, Root: root, Dir: dir})
	publish(t, p, writeEvent(f))
	if _, ok := rec.take()[0].Attr(AttrChanged); ok {
		t.Errorf("changed set with an index that was garbage")
	}
}

// TestGone: a file deleted before it could be read is flagged, not guessed.
func TestGone(t *testing.T) {
	root := t.TempDir()
	rec := &recorder{}
	p := newTestPublisher(t, Options{Next: rec, Root: root})
	f := filepath.Join(root, "short-lived")
	writeFile(t, f, "data")
	if err := os.Remove(f); err != nil {
		t.Fatal(err)
	}
	publish(t, p, writeEvent(f), &event.Event{Type: event.TypeDelete, Subject: f})
	evs := rec.take()
	if got := attr(evs[0], AttrEnrich); got != "gone" {
		t.Errorf("enrich = %q, want gone", got)
	}
	if _, ok := evs[0].Attr(AttrHash); ok {
		t.Errorf("hash set on a file that was gone")
	}
	if st := p.Stats(); st.Gone != 1 {
		t.Errorf("Stats().Gone = %d, want 1", st.Gone)
	}
}

// TestSkippedWithinBound: a read slower than the wait does not hold the
// batch: it is published within the bound, flagged skipped.
func TestSkippedWithinBound(t *testing.T) {
	root := t.TempDir()
	rec := &recorder{}
	release := make(chan struct{})
	var reads atomic.Int32
	p := newTestPublisher(t, Options{Next: rec, Root: root, Wait: 50 * time.Millisecond,
		readHook: func(string) { reads.Add(1); <-release }})
	t.Cleanup(func() { close(release) }) // runs before Close
	f := filepath.Join(root, "slow")
	writeFile(t, f, "data")
	other := &event.Event{Type: event.TypeAttrib, Subject: f}
	start := time.Now()
	publish(t, p, writeEvent(f), other)
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("PublishBatch took %v with a wait of 50ms", d)
	}
	evs := rec.take()
	if len(evs) != 2 || evs[1] != other {
		t.Fatalf("published %d events, want both in order", len(evs))
	}
	if got := attr(evs[0], AttrEnrich); got != "skipped" {
		t.Errorf("enrich = %q, want skipped", got)
	}
	if st := p.Stats(); st.Skipped != 1 {
		t.Errorf("Stats().Skipped = %d, want 1", st.Skipped)
	}

	// The readers are behind: the next batch does not wait at all.
	g := filepath.Join(root, "next")
	writeFile(t, g, "data")
	start = time.Now()
	publish(t, p, writeEvent(g))
	if d := time.Since(start); d >= 50*time.Millisecond {
		t.Errorf("a batch while behind took %v, want no wait", d)
	}
	if got := attr(rec.take()[0], AttrEnrich); got != "skipped" {
		t.Errorf("while behind: enrich = %q, want skipped", got)
	}
}

// TestCatchUp: once the readers have caught up, batches wait again.
func TestCatchUp(t *testing.T) {
	root := t.TempDir()
	rec := &recorder{}
	release := make(chan struct{})
	var once sync.Once
	p := newTestPublisher(t, Options{Next: rec, Root: root, Wait: 20 * time.Millisecond,
		readHook: func(string) { once.Do(func() { <-release }) }})
	f := filepath.Join(root, "f")
	writeFile(t, f, "data")
	publish(t, p, writeEvent(f)) // runs out of time
	close(release)
	for p.pool.busy() > 0 || p.Stats().Indexed == 0 {
		time.Sleep(time.Millisecond)
	}
	publish(t, p, writeEvent(f))
	evs := rec.take()
	if got := attr(evs[1], AttrHash); got == "" {
		t.Errorf("after catching up: no hash (enrich=%q)", attr(evs[1], AttrEnrich))
	}
}

// TestTooLarge: files above the limit are not read.
func TestTooLarge(t *testing.T) {
	root := t.TempDir()
	rec := &recorder{}
	p := newTestPublisher(t, Options{Next: rec, Root: root, MaxSize: 10})
	f := filepath.Join(root, "big")
	writeFile(t, f, "more than ten bytes")
	known := writeEvent(f)
	known.Context.SetSize(19)
	publish(t, p, writeEvent(f), known)
	for i, ev := range rec.take() {
		if got := attr(ev, AttrEnrich); got != "toolarge" {
			t.Errorf("event %d: enrich = %q, want toolarge", i, got)
		}
	}
	if st := p.Stats(); st.TooLarge != 2 || st.Bytes != 0 {
		t.Errorf("Stats: toolarge %d bytes %d, want 2 and 0", st.TooLarge, st.Bytes)
	}
}

// TestMountReadsBacking: subjects under the mount point are read from the
// backing tree; nothing is read through the mount.
func TestMountReadsBacking(t *testing.T) {
	backing := t.TempDir()
	mount := filepath.Join(t.TempDir(), "not-a-mount") // does not exist: a read there fails
	rec := &recorder{}
	var paths []string
	p := newTestPublisher(t, Options{Next: rec, Root: mount, Backing: backing, readHook: func(p string) { paths = append(paths, p) }})
	writeFile(t, filepath.Join(backing, "d", "f"), "content")
	publish(t, p, writeEvent(filepath.Join(mount, "d", "f")))
	ev := rec.take()[0]
	if attr(ev, AttrHash) == "" {
		t.Errorf("no hash for a mount path: %v", ev.Attrs)
	}
	if len(paths) != 1 || paths[0] != filepath.Join(backing, "d", "f") {
		t.Errorf("read %q, want the backing path", paths)
	}
}

// TestRenameOverFile: a rename over a file compares with the file it
// replaced; the old name is forgotten.
func TestRenameOverFile(t *testing.T) {
	root := t.TempDir()
	rec := &recorder{}
	p := newTestPublisher(t, Options{Next: rec, Root: root})
	f, tmp := filepath.Join(root, "doc"), filepath.Join(root, "doc.tmp")
	writeFile(t, f, "same")
	publish(t, p, writeEvent(f))
	writeFile(t, tmp, "same")
	publish(t, p, writeEvent(tmp))
	if err := os.Rename(tmp, f); err != nil {
		t.Fatal(err)
	}
	rn := &event.Event{Type: event.TypeRename, Subject: f}
	rn.Context.OldPath = tmp
	publish(t, p, rn)
	evs := rec.take()
	if got := attr(evs[2], AttrChanged); got != "false" {
		t.Errorf("save by rename of the same bytes: changed = %q, want false", got)
	}
	if _, ok := p.ix.get("doc.tmp"); ok {
		t.Errorf("index still has the old name")
	}
}

// TestRetryIsNotEnrichedTwice: when the next publisher fails, the bridge
// retries the same batch; it gets the same output.
func TestRetryIsNotEnrichedTwice(t *testing.T) {
	root := t.TempDir()
	rec := &recorder{}
	p := newTestPublisher(t, Options{Next: rec, Root: root})
	f := filepath.Join(root, "a")
	writeFile(t, f, "x")
	ev := writeEvent(f)
	rec.fail = 1
	if err := p.PublishBatch(context.Background(), []*event.Event{ev}); err == nil {
		t.Fatal("PublishBatch succeeded while the next one failed")
	}
	publish(t, p, ev)
	evs := rec.take()
	if len(evs) != 1 {
		t.Fatalf("published %d events, want 1", len(evs))
	}
	if _, ok := evs[0].Attr(AttrChanged); ok {
		t.Errorf("retry compared the file with itself: changed = %q", attr(evs[0], AttrChanged))
	}
	if st := p.Stats(); st.Retries != 1 {
		t.Errorf("Stats().Retries = %d, want 1", st.Retries)
	}
}

// TestCoalescing: while a read of a path runs, later jobs of it queue
// one read; the superseded ones finish at once, flagged coalesced.
func TestCoalescing(t *testing.T) {
	gate, started := make(chan struct{}), make(chan struct{}, 10)
	var reads atomic.Int32
	pl := newPool(1, 10, func(j *job) {
		reads.Add(1)
		started <- struct{}{}
		<-gate
	})
	defer pl.close()
	newJob := func() *job { return &job{rel: "busy", done: make(chan struct{})} }
	first := newJob()
	pl.submit(first)
	<-started // the first read runs
	var jobs []*job
	for i := range 3 {
		j := newJob()
		ok, superseded := pl.submit(j)
		if !ok || superseded != (i > 0) {
			t.Errorf("submit %d: ok %v superseded %v, want true %v", i, ok, superseded, i > 0)
		}
		jobs = append(jobs, j)
	}
	for _, j := range jobs[:2] {
		select {
		case <-j.done:
			if j.flag != flagCoalesced {
				t.Errorf("superseded job: flag %q, want coalesced", j.flag)
			}
		case <-time.After(time.Second):
			t.Fatal("superseded job not finished")
		}
	}
	close(gate)
	for _, j := range []*job{first, jobs[2]} {
		select {
		case <-j.done:
			if j.flag != "" {
				t.Errorf("read job: flag %q", j.flag)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("job not done")
		}
	}
	if n := reads.Load(); n != 2 {
		t.Errorf("%d reads, want 2", n)
	}
}

// TestCreateEmpty: an fs.create of a file that turns out empty gets no
// facts and no flag; the write that fills it compares with the empty file.
func TestCreateEmpty(t *testing.T) {
	root := t.TempDir()
	rec := &recorder{}
	p := newTestPublisher(t, Options{Next: rec, Root: root})
	f := filepath.Join(root, "new")
	writeFile(t, f, "")
	publish(t, p, &event.Event{Type: event.TypeCreate, Subject: f})
	if ev := rec.take()[0]; len(ev.Attrs) != 0 {
		t.Errorf("create of an empty file: attrs %v, want none", ev.Attrs)
	}
	writeFile(t, f, "filled")
	publish(t, p, writeEvent(f))
	ev := rec.take()[0]
	if attr(ev, AttrChanged) != "true" || attr(ev, AttrPrevSize) != "0" {
		t.Errorf("write after create: changed=%q prevsize=%q, want true 0", attr(ev, AttrChanged), attr(ev, AttrPrevSize))
	}
}
