package enrich

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/bridge"
	"github.com/semprop/semprop/internal/capture/fanotify"
)

// watchTree runs the kernel boundary and a bridge on root, publishing
// through p (whose Next is the caller's recorder).
func watchTree(t *testing.T, root string, p *Publisher) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: fanotify filesystem marks")
	}
	b, err := bridge.New(bridge.Options{Publisher: p, Source: "semprop://test", SelfPID: int32(os.Getpid()),
		PublishDelay: -1, BatchDelay: -1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	bdone, wdone := make(chan error, 1), make(chan error, 1)
	go func() { bdone <- b.Run(ctx) }()
	w, err := fanotify.New(fanotify.Options{Root: root, Sink: b.Kernel()})
	if err != nil {
		cancel()
		<-bdone
		t.Fatal(err)
	}
	if w.Mode() != "fanotify" {
		t.Logf("kernel boundary is %s", w.Mode())
	}
	go func() { wdone <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		for _, c := range []chan error{wdone, bdone} {
			select {
			case <-c:
			case <-time.After(10 * time.Second):
				t.Error("Run did not return")
			}
		}
		_ = w.Close()
	})
	time.Sleep(50 * time.Millisecond)
}

func git(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com",
		"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com", "GIT_CONFIG_NOSYSTEM=1", "HOME="+dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
}

// TestGitCommitSummarised runs `git add` and `git commit` in a watched tree
// and expects, in summarise mode, one vcs.git event per command and no
// event under .git/, while the work tree's own changes pass.
func TestGitCommitSummarised(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("needs git")
	}
	root := t.TempDir()
	repo := filepath.Join(root, "repo")
	if err := os.Mkdir(repo, 0o755); err != nil {
		t.Fatal(err)
	}
	git(t, repo, "init", "-q", "-b", "main")
	rec := &recorder{}
	p := newTestPublisher(t, Options{Next: rec, Root: root, VCS: VCSSummarise, VCSQuiet: 100 * time.Millisecond})
	watchTree(t, root, p)

	writeFile(t, filepath.Join(repo, "file.txt"), "hello\n")
	git(t, repo, "add", "file.txt")
	rec.waitFor(t, 10*time.Second, func(ev *event.Event) bool { return ev.Type == TypeVCSGit })
	git(t, repo, "commit", "-q", "-m", "first")
	rec.waitFor(t, 10*time.Second, func(ev *event.Event) bool {
		return ev.Type == TypeVCSGit && strings.Contains(attr(ev, AttrRefs), "refs/heads/main")
	})
	time.Sleep(300 * time.Millisecond) // anything that would come late
	var sums []*event.Event
	var other []string
	for _, ev := range rec.take() {
		switch {
		case ev.Type == TypeVCSGit:
			sums = append(sums, ev)
		case strings.Contains(ev.Subject, "/.git/"):
			t.Errorf("event under .git published: %s %s", ev.Type, ev.Subject)
		default:
			other = append(other, ev.Type+" "+ev.Subject)
		}
	}
	// add, commit, and perhaps the maintenance git runs after a commit
	// (objects/maintenance.lock), on its own when it came after the
	// commit's operation ended.
	var commit *event.Event
	for _, ev := range sums {
		if strings.Contains(attr(ev, AttrRefs), "refs/heads/main") {
			commit = ev
		}
	}
	if len(sums) < 2 || len(sums) > 3 || commit == nil || commit == sums[0] {
		t.Fatalf("%d vcs.git events, want add, commit (with refs/heads/main) and at most maintenance", len(sums))
	}
	if commit.Subject != repo || commit.Context.Comm != "git" {
		t.Errorf("summary subject %q comm %q, want %q git", commit.Subject, commit.Context.Comm, repo)
	}
	if n := attr(commit, AttrCount); n == "" || n == "0" || n == "1" {
		t.Errorf("summary count = %q, want several events", n)
	}
	if _, err := time.Parse(time.RFC3339Nano, attr(commit, AttrFirst)); err != nil {
		t.Errorf("summary first = %q: %v", attr(commit, AttrFirst), err)
	}
	if !strings.Contains(strings.Join(other, "\n"), "fs.write "+filepath.Join(repo, "file.txt")) {
		t.Errorf("the work tree's write was not published: %q", other)
	}
	st := p.Stats()
	if st.VCSOps != uint64(len(sums)) || st.VCSHeld < 4 {
		t.Errorf("Stats: vcs ops %d held %d, want %d and several", st.VCSOps, st.VCSHeld, len(sums))
	}
	t.Logf("commit summary: count=%s refs=%s; %d events held in all", attr(commit, AttrCount), attr(commit, AttrRefs), st.VCSHeld)
}
