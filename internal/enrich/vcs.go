package enrich

import (
	"strconv"
	"strings"
	"time"

	"github.com/semprop/semprop/event"
)

// VCSMode says what becomes of the events a git operation makes under
// .git/ from the first lock file it creates there until it is done.
type VCSMode string

// The VCS modes.
const (
	VCSPass      VCSMode = "pass"      // publish them like any other
	VCSSummarise VCSMode = "summarise" // hold them; publish one vcs.git event per operation
	VCSDrop      VCSMode = "drop"      // hold them and publish nothing
)

// TypeVCSGit is the type of the summary of one git operation.
const TypeVCSGit = "vcs.git"

// Attributes of a vcs.git event.
const (
	AttrCount = "count" // events held (vcs.git), or collapsed (settled events)
	AttrFirst = "first" // RFC 3339 time of the first of them
	AttrRefs  = "refs"  // vcs.git: refs the operation wrote, comma-separated
)

const (
	gitDir     = "/.git/"
	indexLock  = "index.lock"
	lockSuffix = ".lock"
	maxRefs    = 8
)

// vcsOp is one git operation in progress in one repository.
type vcsOp struct {
	repo     string // the work tree, as events name it
	locked   bool   // index.lock exists
	count    int64
	first    time.Time // event time of the first held event
	last     time.Time // event time of the last
	seen     time.Time // wall clock when the last held event came
	proto    event.Event
	refs     []string
	moreRefs int
}

// vcsTracker holds the .git/ events of git operations and summarises
// them. It is not safe for concurrent use: the Publisher calls it under
// its mutex.
type vcsTracker struct {
	mode  VCSMode
	quiet time.Duration // an unlocked operation ends after this without events
	stale time.Duration // a locked one is checked on disk after this
	ops   map[string]*vcsOp
}

func newVCSTracker(mode VCSMode, quiet time.Duration) *vcsTracker {
	return &vcsTracker{mode: mode, quiet: quiet, stale: max(10*quiet, 2*time.Second), ops: make(map[string]*vcsOp)}
}

// splitGit returns the work tree of a path under a .git directory and the
// path inside .git.
func splitGit(p string) (repo, inside string, ok bool) {
	i := strings.Index(p, gitDir)
	if i < 0 {
		return "", "", false
	}
	return p[:i], p[i+len(gitDir):], true
}

// hold reports whether ev belongs to a git operation in progress (or
// starts one) and is held; held events are counted in the operation.
func (t *vcsTracker) hold(ev *event.Event, now time.Time) bool {
	if t.mode == VCSPass || t.mode == "" {
		return false
	}
	repo, inside, ok := splitGit(ev.Subject)
	if !ok && ev.Type == event.TypeRename {
		repo, inside, ok = splitGit(ev.Context.OldPath)
	}
	if !ok {
		return false
	}
	op := t.ops[repo]
	if op == nil {
		// Git writes every file under .git/ through a lock file
		// (FILE.lock, renamed over FILE): the first lock starts an
		// operation — index.lock for most commands, a ref's lock for a
		// fetch, objects/maintenance.lock for the maintenance a commit
		// starts in the background.
		if !strings.HasSuffix(inside, lockSuffix) || ev.Type != event.TypeCreate {
			return false
		}
		op = &vcsOp{repo: repo, first: ev.Time}
		op.proto = event.Event{Source: ev.Source, Boundary: ev.Boundary, Boundaries: ev.Boundaries}
		c := &ev.Context
		op.proto.Context = event.Context{Known: c.Known & (event.HasPID | event.HasTID | event.HasUID | event.HasGID),
			PID: c.PID, TID: c.TID, UID: c.UID, GID: c.GID, Comm: c.Comm, Exe: c.Exe}
		t.ops[repo] = op
	}
	op.count++
	op.last, op.seen = ev.Time, now
	switch {
	case inside == indexLock && ev.Type == event.TypeCreate:
		op.locked = true
	case inside == indexLock && ev.Type == event.TypeDelete,
		ev.Type == event.TypeRename && ev.Context.OldPath == repo+gitDir+indexLock:
		op.locked = false
	}
	op.noteRef(inside)
	return true
}

// noteRef records a ref the operation wrote.
func (op *vcsOp) noteRef(inside string) {
	inside = strings.TrimSuffix(inside, lockSuffix)
	if !strings.HasPrefix(inside, "refs/") && (strings.Contains(inside, "/") || !strings.HasSuffix(inside, "HEAD")) {
		return
	}
	for _, r := range op.refs {
		if r == inside {
			return
		}
	}
	if len(op.refs) == maxRefs {
		op.moreRefs++
		return
	}
	op.refs = append(op.refs, inside)
}

// finish ends the operations that are over: unlocked and quiet for the
// quiet time, or locked but quiet for the stale time with the lock gone
// from disk (its removal was not seen). It returns their summaries in
// summarise mode.
func (t *vcsTracker) finish(now time.Time, lockGone func(repo string) bool, force bool) (out []*event.Event, ended int) {
	for repo, op := range t.ops {
		idle := now.Sub(op.seen)
		switch {
		case force:
		case !op.locked && idle >= t.quiet:
		case op.locked && idle >= t.stale && lockGone(repo):
		default:
			continue
		}
		delete(t.ops, repo)
		ended++
		if t.mode == VCSSummarise {
			out = append(out, op.summary())
		}
	}
	return out, ended
}

func (op *vcsOp) summary() *event.Event {
	ev := new(event.Event)
	*ev = op.proto
	ev.Type = TypeVCSGit
	ev.Subject = op.repo
	ev.Time = op.last
	ev.SetAttr(AttrCount, strconv.FormatInt(op.count, 10))
	if !op.first.IsZero() {
		ev.SetAttr(AttrFirst, op.first.UTC().Format(time.RFC3339Nano))
	}
	if len(op.refs) > 0 {
		refs := strings.Join(op.refs, ",")
		if op.moreRefs > 0 {
			refs += ",+" + strconv.Itoa(op.moreRefs)
		}
		ev.SetAttr(AttrRefs, refs)
	}
	return ev
}

// active is the number of operations in progress.
func (t *vcsTracker) active() int { return len(t.ops) }
