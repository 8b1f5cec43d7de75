package ransomware

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/action"
	"github.com/semprop/semprop/internal/audit"
	"github.com/semprop/semprop/internal/bridge"
	"github.com/semprop/semprop/internal/capture/fusefs"
	"github.com/semprop/semprop/internal/enrich"
	"github.com/semprop/semprop/internal/guard"
	"github.com/semprop/semprop/internal/journal"
	"github.com/semprop/semprop/internal/propagate"
	"github.com/semprop/semprop/internal/rules"
)

// pipeline is the daemon's path of an event through a mount, in process:
// FUSE mount (with the guard) → bridge → enrichment (content facts) →
// journal and manager → rule engine → action executor → guard.
type pipeline struct {
	backing, mnt, data string
	j                  *journal.Journal
	m                  *propagate.Manager
	eng                *rules.Engine
	x                  *action.Executor
	g                  *guard.Guard
	store              *action.Store
	fs                 *fusefs.FS
	stop               func()
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for a direct FUSE mount")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("needs /dev/fuse: %v", err)
	}
}

func startPipeline(t *testing.T, snapshot bool) *pipeline {
	t.Helper()
	base := t.TempDir()
	p := &pipeline{backing: filepath.Join(base, "backing"), mnt: filepath.Join(base, "mnt"), data: filepath.Join(base, "data")}
	for _, d := range []string{p.backing, p.mnt, p.data} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	var err error
	if p.j, err = journal.Open(journal.Options{Dir: filepath.Join(p.data, "journal"), Fsync: journal.FsyncNever, Logger: log}); err != nil {
		t.Fatal(err)
	}
	if p.m, err = propagate.New(propagate.Options{Journal: p.j, Dir: p.data, Source: "semprop://test", Logger: log}); err != nil {
		t.Fatal(err)
	}
	set, err := rules.Load("rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if p.store, err = action.OpenStore(filepath.Join(p.data, "snapshots")); err != nil {
		t.Fatal(err)
	}
	cfg := guard.DefaultConfig()
	cfg.SnapshotBeforeDestroy = snapshot
	if p.g, err = guard.New(guard.Options{Config: cfg, Snapshots: p.store, Dir: filepath.Join(p.data, "guard"), Logger: log}); err != nil {
		t.Fatal(err)
	}
	en, err := enrich.New(enrich.Options{Next: p.m, Root: p.mnt, Backing: p.backing, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	br, err := bridge.New(bridge.Options{Publisher: en, Source: "semprop://test", Backing: p.backing, Mount: p.mnt,
		SelfPID: int32(os.Getpid()), NoPassthrough: true, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	open := func(from uint64) (*propagate.Reader, error) { return p.m.Reader(from) }
	if p.eng, err = rules.NewEngine(set, rules.Options{Dir: filepath.Join(p.data, "rules"), Publisher: p.m,
		Open: func(from uint64) (rules.Source, error) { return open(from) }, Source: "semprop://test/rules",
		IdleAdvance: 2 * time.Second, Logger: log}); err != nil {
		t.Fatal(err)
	}
	alog, err := audit.Open(filepath.Join(p.data, "audit"), log)
	if err != nil {
		t.Fatal(err)
	}
	roots, err := action.NewRoots(p.backing, p.mnt)
	if err != nil {
		t.Fatal(err)
	}
	if p.x, err = action.New(set, action.Options{Dir: filepath.Join(p.data, "actions"), Audit: alog, Publisher: p.m,
		Open:   func(from uint64) (action.Source, error) { return open(from) },
		Env:    &action.Env{Roots: roots, Snapshots: p.store, Guard: p.g, QuarantineFor: cfg.QuarantineFor},
		Source: "semprop://test/actions", Logger: log}); err != nil {
		t.Fatal(err)
	}
	if p.fs, err = fusefs.Mount(fusefs.Options{Backing: p.backing, Mountpoint: p.mnt, Sink: br.FUSE(), Guard: p.g, Logger: log}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, run := range []func(context.Context) error{br.Run, p.eng.Run, p.x.Run, p.g.Run} {
		wg.Go(func() {
			if err := run(ctx); err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("pipeline: %v", err)
			}
		})
	}
	p.stop = func() {
		if err := p.fs.Unmount(); err != nil {
			t.Errorf("unmount: %v", err)
		}
		cancel()
		wg.Wait()
		cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
		en.Close(cctx)
		ccancel()
		alog.Close()
		p.m.Close()
		p.j.Close()
	}
	t.Cleanup(p.stop)
	return p
}

// settle waits until the rule engine and the executor have read the
// whole journal and nothing new arrived for quiet.
func (p *pipeline) settle(t *testing.T, quiet time.Duration) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	last, since := uint64(0), time.Now()
	for time.Now().Before(deadline) {
		seq := p.j.LastSeq()
		if seq != last {
			last, since = seq, time.Now()
		}
		if time.Since(since) >= quiet && p.eng.Stats().Cursor >= seq && p.x.Stats().Cursor >= seq {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("pipeline did not settle: journal %d, rules %d, actions %d", p.j.LastSeq(), p.eng.Stats().Cursor, p.x.Stats().Cursor)
}

// events returns the journal's events.
func (p *pipeline) events(t *testing.T) []*event.Event {
	t.Helper()
	r, err := p.m.Reader(1)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var out []*event.Event
	for {
		ev := new(event.Event)
		ok, err := r.TryNext(ev)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return out
		}
		out = append(out, ev)
	}
}

// matches counts the rule matches in the journal, by rule.
func (p *pipeline) matches(t *testing.T) map[string]int {
	n := map[string]int{}
	for _, ev := range p.events(t) {
		if ev.Type == rules.TypeMatch {
			r, _ := ev.Attr(rules.AttrRule)
			n[r]++
		}
	}
	return n
}

// sh runs a shell script in dir (under the mount: a child process, never
// this one, touches the mount), bounded in time.
func sh(t *testing.T, dir, script string, env ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-ec", script)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}
}

// TestMain runs the test binary as a helper process when
// SEMPROP_RANSOM_HELPER is set (the server must never touch its own
// mount).
func TestMain(m *testing.M) {
	if os.Getenv("SEMPROP_RANSOM_HELPER") == "editor" {
		if err := editorLoop(os.Args[len(os.Args)-1]); err != nil {
			fmt.Fprintln(os.Stderr, "editor:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// editorLoop saves four text files 60 times each the way editors do, in
// one process: write the new content to a temporary file, fsync, rename
// it over the file.
func editorLoop(dir string) error {
	var doc strings.Builder
	for i := range 60 {
		fmt.Fprintf(&doc, "Line %d of a document that someone is editing, with some words in it.\n", i)
		for _, f := range []string{"a.txt", "b.md", "c.go", "d.txt"} {
			tmp := filepath.Join(dir, "."+f+".swp")
			fd, err := os.Create(tmp)
			if err != nil {
				return err
			}
			fd.WriteString(doc.String())
			fd.Sync()
			fd.Close()
			if err := os.Rename(tmp, filepath.Join(dir, f)); err != nil {
				return err
			}
		}
	}
	return nil
}

// benign are the workloads that must not look like ransomware.
var benign = []struct {
	name   string
	script string
}{
	{"cp -r of a source tree", `cp -r "$GOROOT/src/encoding" "$MNT/cp-src"`},
	{"git repository: commits, branches, checkouts", `
		mkdir "$MNT/repo" && cd "$MNT/repo"
		git init -q -b main . && git config user.email t@example.com && git config user.name t
		cp -r "$GOROOT/src/encoding/json" json && git add . && git commit -qm one
		git checkout -qb other && rm json/indent.go && echo change >> json/decode.go && git commit -qam two
		for i in 1 2 3; do git checkout -q main; git checkout -q other; done
		git gc -q`},
	{"go build of a tiny module", `
		mkdir "$MNT/mod" && cd "$MNT/mod"
		printf 'module example.com/tiny\n\ngo 1.22\n' > go.mod
		printf 'package main\n\nimport "fmt"\n\nfunc main() { fmt.Println("hi") }\n' > main.go
		go build -o tiny . && go vet . && rm tiny && go build -o tiny .`},
	{"tar x of an archive with compressed files", `
		mkdir "$MNT/untar" && tar -xzf "$TARBALL" -C "$MNT/untar"`},
	{"an editor's save-by-rename loop", `mkdir "$MNT/edit" && SEMPROP_RANSOM_HELPER=editor "$SELF" "$MNT/edit"`},
}

// tarball makes an archive of high-entropy (compressed-like) and text
// files outside the mount.
func tarball(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	os.Mkdir(src, 0o755)
	rnd := rand.New(rand.NewPCG(1, 2))
	for i := range 20 {
		b := make([]byte, 8192)
		for j := range b {
			b[j] = byte(rnd.Uint32())
		}
		os.WriteFile(filepath.Join(src, fmt.Sprintf("blob%02d.gz", i)), b, 0o644)
		os.WriteFile(filepath.Join(src, fmt.Sprintf("note%02d.txt", i)), []byte(strings.Repeat("plain text\n", 200)), 0o644)
	}
	out := filepath.Join(dir, "a.tgz")
	if b, err := exec.Command("tar", "-czf", out, "-C", src, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v\n%s", err, b)
	}
	return out
}

func goroot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		t.Skipf("go env GOROOT: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// TestBenignNoAlarm runs the benign workloads through a mount with the
// ransomware rules and the guard: no rule matches, nobody is quarantined.
func TestBenignNoAlarm(t *testing.T) {
	requireRoot(t)
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("needs git")
	}
	gr := goroot(t)
	tb := tarball(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p := startPipeline(t, true)
	for _, w := range benign {
		start := time.Now()
		sh(t, p.mnt, w.script, "SELF="+self, "MNT="+p.mnt, "GOROOT="+gr, "TARBALL="+tb, "GOFLAGS=-mod=mod", "GOTOOLCHAIN=local")
		p.settle(t, 500*time.Millisecond)
		n := p.matches(t)
		t.Logf("%-45s %6.2fs, journal at %d events, matches so far %v, guard %d listed",
			w.name, time.Since(start).Seconds(), p.j.LastSeq(), n, len(p.g.List()))
	}
	if n := p.matches(t); len(n) != 0 {
		t.Errorf("false alarms: %v", n)
	}
	if l := p.g.List(); len(l) != 0 {
		t.Errorf("quarantined by benign workloads: %+v", l)
	}
	if st := p.g.Stats(); len(st.Refused) != 0 {
		t.Errorf("refused: %v", st.Refused)
	}
}

// report is what one attack measured.
type report struct {
	files, touched, touchedAfter int
	firstOp, quarantined         time.Time
	recoverable, intact          int
	refused                      map[string]uint64
	preserved                    uint64
}

func (r report) String() string {
	return fmt.Sprintf("files %d, touched before detection %d, first op to quarantine %v, touched after detection %d, "+
		"recoverable %d/%d (%.1f%%; intact %d), refused %v, copies before destroy %d",
		r.files, r.touched, r.quarantined.Sub(r.firstOp).Round(time.Millisecond), r.touchedAfter,
		r.recoverable, r.files, 100*float64(r.recoverable)/float64(r.files), r.intact, r.refused, r.preserved)
}

type step struct {
	Time time.Time `json:"time"`
	File string    `json:"file"`
	Step string    `json:"step"`
	Err  string    `json:"err"`
}

func buildSimulator(t *testing.T) string {
	t.Helper()
	exe := filepath.Join(t.TempDir(), "simulator")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", exe, "./simulator").CombinedOutput(); err != nil {
		t.Fatalf("go build ./simulator: %v\n%s", err, out)
	}
	return exe
}

// attack fills DIR/victim with text files, runs the simulator through the
// mount at rate files per second, and measures.
func attack(t *testing.T, p *pipeline, sim string, files int, rate float64) report {
	t.Helper()
	victim := filepath.Join(p.backing, "victim")
	orig := map[string]string{} // relative path -> sha256
	rnd := rand.New(rand.NewPCG(3, 4))
	words := strings.Fields("alpha beta gamma delta invoice contract report budget minutes summary draft final")
	for i := range files {
		rel := fmt.Sprintf("d%d/doc%03d.txt", i%5, i)
		var sb strings.Builder
		for range 200 + rnd.IntN(800) {
			sb.WriteString(words[rnd.IntN(len(words))])
			sb.WriteByte(' ')
		}
		os.MkdirAll(filepath.Join(victim, filepath.Dir(rel)), 0o755)
		if err := os.WriteFile(filepath.Join(victim, rel), []byte(sb.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256([]byte(sb.String()))
		orig[rel] = hex.EncodeToString(sum[:])
	}
	os.WriteFile(filepath.Join(victim, ".ransomware-simulator-ok"), nil, 0o644)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// The guard drops a process once it exited: watch the list meanwhile.
	var quarantined time.Time
	watchDone, stopWatch := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(watchDone)
		for {
			if l := p.g.List(); len(l) > 0 {
				quarantined = l[0].Since
				return
			}
			select {
			case <-stopWatch:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	cmd := exec.CommandContext(ctx, sim, "-dir", filepath.Join(p.mnt, "victim"), "-rate", fmt.Sprint(rate))
	out, err := cmd.Output()
	close(stopWatch)
	<-watchDone
	if err != nil {
		t.Fatalf("simulator: %v", err)
	}
	p.settle(t, time.Second)
	p.g.Flush()

	var r report
	r.files = files
	touched := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	var steps []step
	for sc.Scan() {
		var s step
		if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
			t.Fatalf("simulator output %q: %v", sc.Text(), err)
		}
		steps = append(steps, s)
	}
	if len(steps) == 0 {
		t.Fatal("the simulator did nothing")
	}
	r.firstOp = steps[0].Time
	r.quarantined = quarantined
	for _, s := range steps {
		if s.Err == "" {
			touched[s.File] = true
		}
	}
	r.touched = len(touched)
	after := map[string]bool{}
	for _, s := range steps {
		if !r.quarantined.IsZero() && s.Time.After(r.quarantined) && !touched[s.File] {
			after[s.File] = true
		}
	}
	r.touchedAfter = len(after)

	// Recoverable: the original is intact, or its content is in the
	// snapshot store and listed in a manifest.
	inStore := map[string]bool{}
	ms, err := p.store.List()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		for _, f := range m.Files {
			if _, err := os.Stat(filepath.Join(p.store.Dir(), "objects", f.SHA256[:2], f.SHA256)); err == nil {
				inStore[f.SHA256] = true
			}
		}
	}
	var lost []string
	for rel, sum := range orig {
		data, err := os.ReadFile(filepath.Join(victim, rel))
		cur := sha256.Sum256(data)
		switch {
		case err == nil && hex.EncodeToString(cur[:]) == sum:
			r.intact++
			r.recoverable++
		case inStore[sum]:
			r.recoverable++
		default:
			lost = append(lost, rel)
		}
	}
	sort.Strings(lost)
	if len(lost) > 0 {
		t.Logf("not recoverable: %v", lost)
	}
	for f := range after {
		if data, err := os.ReadFile(filepath.Join(victim, f)); err != nil || hexSum(data) != orig[f] {
			t.Errorf("%s: touched after the quarantine, yet not intact (%v)", f, err)
		}
	}
	r.refused = p.g.Stats().Refused
	r.preserved = p.g.Stats().Preserved
	return r
}

func hexSum(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// TestRansomware runs the simulator through a mount with the ransomware
// rules, the guard and snapshots before destroy: it is quarantined, every
// file it touched after that is intact, and at least 99% of all files are
// recoverable. Without snapshots before destroy only the files it did not
// reach are. SEMPROP_RANSOM_RATE sets the simulator's files per second
// (default 25; 0: as fast as it goes).
func TestRansomware(t *testing.T) {
	requireRoot(t)
	sim := buildSimulator(t)
	files, rate := 300, 25.0
	if v, err := strconv.ParseFloat(os.Getenv("SEMPROP_RANSOM_RATE"), 64); err == nil && v >= 0 {
		rate = v // files per second; 0: as fast as the simulator goes
	}
	for _, snapshot := range []bool{true, false} {
		t.Run(fmt.Sprintf("snapshot_before_destroy=%v", snapshot), func(t *testing.T) {
			p := startPipeline(t, snapshot)
			r := attack(t, p, sim, files, rate)
			t.Logf("rate %v files/s: %v", rate, r)
			if r.quarantined.IsZero() {
				t.Fatalf("the simulator was not quarantined: %v", r)
			}
			if n := p.matches(t)["ransomware-encrypt-rename"]; n != 1 {
				t.Errorf("%d matches of ransomware-encrypt-rename, want 1", n)
			}
			if r.touchedAfter == 0 || r.refused["create"] == 0 {
				t.Errorf("nothing refused after the quarantine: %v", r)
			}
			if r.touched+r.touchedAfter != files {
				t.Errorf("touched %d + after %d != %d files", r.touched, r.touchedAfter, files)
			}
			if snapshot && float64(r.recoverable) < 0.99*float64(files) {
				t.Errorf("recoverable %d of %d, want >= 99%%", r.recoverable, files)
			}
			if !snapshot && r.recoverable != r.intact {
				t.Errorf("recoverable %d without snapshots, intact %d", r.recoverable, r.intact)
			}
			// The audit trail has the quarantine.
			recs, err := audit.List(filepath.Join(p.data, "audit"), audit.Filter{Kind: audit.KindDone})
			if err != nil || len(recs) != 1 || recs[0].Type != "quarantine-process" {
				t.Errorf("audit done records %v, %v; want the quarantine", recs, err)
			}
		})
	}
}
