// Package guard is the FUSE boundary's last line of defence: a list of
// processes (and optionally users) that a rule has flagged, whose
// mutating operations through a semprop mount are refused with EPERM,
// and a snapshot of every file that an operation through a mount is
// about to destroy.
//
// # The list
//
// Quarantine lists a process id (with its start time, so that a reused
// pid is never refused) and, when asked, its user id, until an expiry;
// Release removes it. The list is copy-on-write behind an atomic pointer
// that is nil while nobody is listed: Active, which the mount calls on
// every mutating operation, is one atomic load. A goroutine (Run) drops
// expired entries and processes that exited. With Options.Dir the list
// is written to DIR/guard.json on every change and read back by New, so
// a restart of the daemon keeps a process quarantined (an entry whose
// process is gone or whose start time changed is dropped then).
//
// # Snapshot before destroy
//
// With Config.SnapshotBeforeDestroy, the mount calls Preserve before an
// unlink, a rename over an existing file, a truncate (setattr size) and
// an open with O_TRUNC: the file's content is copied into the
// content-addressed snapshot store (action.Store) before the operation
// runs. The copies are made durable together (one syncfs) and listed in
// one manifest of rule "guard" per flush (Run flushes every
// FlushInterval), with each file's path under the mount, the operation
// and the time, so `semprop snapshots ls|restore` finds them.
// Empty files, files with other hard links (an unlink or rename over one
// destroys nothing), non-regular files and files larger than
// Config.MaxFileSize are not copied. A copy that fails (disk full) is
// logged and counted and the operation goes ahead.
//
// All methods of Guard are safe for concurrent use.
package guard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/semprop/semprop/internal/action"
	"github.com/semprop/semprop/internal/atomicfile"
	"github.com/semprop/semprop/internal/bytesize"
	"github.com/semprop/semprop/internal/capture/procinfo"
)

// Errors.
var (
	ErrConfig    = errors.New("guard: invalid configuration")
	ErrProtected = errors.New("guard: process or user may not be quarantined")
	ErrGone      = errors.New("guard: no such process")
	ErrNotListed = errors.New("guard: not on the guard list")
)

// Defaults of Config.
const (
	DefaultMaxFileSize = 64 << 20
	DefaultQuarantine  = 10 * time.Minute
)

// Config is the guard: section of the daemon's configuration.
//
//	guard:
//	  enabled: true                  # the mounts consult the guard list
//	  snapshot_before_destroy: false # copy files before an operation destroys them
//	  max_file_size: 64MiB           # larger files are not copied
//	  quarantine_for: 10m            # quarantine-process's default duration
type Config struct {
	Enabled               bool          `yaml:"enabled"`
	SnapshotBeforeDestroy bool          `yaml:"snapshot_before_destroy"`
	MaxFileSize           Size          `yaml:"max_file_size"`
	QuarantineFor         time.Duration `yaml:"quarantine_for"`
}

// DefaultConfig returns the defaults: enabled, no snapshots before
// destroy, 64MiB, 10m.
func DefaultConfig() Config {
	return Config{Enabled: true, MaxFileSize: DefaultMaxFileSize, QuarantineFor: DefaultQuarantine}
}

// Validate checks c.
func (c Config) Validate() error {
	if c.MaxFileSize < 0 {
		return fmt.Errorf("%w: max_file_size: %d: want a non-negative size", ErrConfig, c.MaxFileSize)
	}
	if c.QuarantineFor < 0 {
		return fmt.Errorf("%w: quarantine_for: %v: want a non-negative duration", ErrConfig, c.QuarantineFor)
	}
	return nil
}

// Size is a byte count written as a number or with a unit (KiB, MiB,
// GiB, TiB, KB, MB, GB, TB).
type Size int64

// UnmarshalText parses a size such as 64MiB.
func (s *Size) UnmarshalText(b []byte) error {
	n, err := bytesize.Parse(string(b))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrConfig, err)
	}
	*s = Size(n)
	return nil
}

// Options configure a Guard.
type Options struct {
	Config Config
	// Snapshots is the store Preserve copies into; required with
	// Config.SnapshotBeforeDestroy.
	Snapshots *action.Store
	// Dir, if set, holds guard.json, the list across restarts.
	Dir    string
	Logger *slog.Logger
	// Now is the clock (default time.Now); tests set it.
	Now func() time.Time
}

// Entry is one listed process or user.
type Entry struct {
	PID     int32     `json:"pid,omitempty"`
	Start   string    `json:"start,omitempty"` // the process's start time (clock ticks after boot)
	UID     uint32    `json:"uid"`
	ByUID   bool      `json:"by_uid,omitempty"` // every process of UID is refused
	Until   time.Time `json:"until"`
	Reason  string    `json:"reason,omitempty"`
	Since   time.Time `json:"since"`
	Refused uint64    `json:"refused"` // operations refused so far
}

// entry is a listed process or user; refused counts its refusals.
type entry struct {
	Entry
	refused atomic.Uint64
}

// list is an immutable set of entries, replaced on every change.
type list struct {
	pids map[int32]*entry
	uids map[uint32]*entry
}

// Guard is the guard list and the snapshot-before-destroy hook of the
// mounts. It implements fusefs.Guard and action.Guard.
type Guard struct {
	cfg   Config
	store *action.Store
	dir   string
	log   *slog.Logger
	now   func() time.Time

	cur atomic.Pointer[list] // nil: nobody listed

	mu sync.Mutex // serializes changes of cur and writes of guard.json

	flushMu sync.Mutex // serializes Flush; taken before pendMu

	pendMu  sync.Mutex // guards pending
	pending []action.FileEntry

	refused                                    [numOps]atomic.Uint64
	preserved, preservedBytes, preserveSkipped atomic.Uint64
	preserveFailed                             atomic.Uint64
}

// New returns a guard, with the list of Options.Dir read back.
func New(opts Options) (*Guard, error) {
	if err := opts.Config.Validate(); err != nil {
		return nil, err
	}
	if opts.Config.SnapshotBeforeDestroy && opts.Snapshots == nil {
		return nil, fmt.Errorf("%w: snapshot_before_destroy needs a snapshot store", ErrConfig)
	}
	g := &Guard{cfg: opts.Config, store: opts.Snapshots, dir: opts.Dir, log: opts.Logger, now: opts.Now}
	if g.log == nil {
		g.log = slog.New(slog.DiscardHandler)
	}
	if g.now == nil {
		g.now = time.Now
	}
	if g.cfg.MaxFileSize == 0 {
		g.cfg.MaxFileSize = DefaultMaxFileSize
	}
	if g.cfg.QuarantineFor == 0 {
		g.cfg.QuarantineFor = DefaultQuarantine
	}
	if g.dir != "" {
		if err := os.MkdirAll(g.dir, 0o700); err != nil {
			return nil, fmt.Errorf("guard: %w", err)
		}
		if err := g.load(); err != nil {
			return nil, err
		}
	}
	return g, nil
}

// Config returns the configuration in effect (defaults filled in).
func (g *Guard) Config() Config { return g.cfg }

// Active reports whether anybody is listed: one atomic load, called on
// every mutating operation through a mount.
func (g *Guard) Active() bool { return g.cur.Load() != nil }

// Refuse reports whether an operation op of process pid (0 if unknown),
// run as uid, must be refused, and counts it if so.
func (g *Guard) Refuse(pid int32, uid uint32, op string) bool {
	l := g.cur.Load()
	if l == nil {
		return false
	}
	e := l.pids[pid]
	if e == nil || pid == 0 {
		e = l.uids[uid]
	}
	if e == nil || !g.now().Before(e.Until) {
		return false
	}
	e.refused.Add(1)
	g.refused[opIndex(op)].Add(1)
	return true
}

// Quarantine lists process pid (whose start time is read now) until
// until, and with byUID the user uid as well. Listing a listed pid
// again extends its expiry to the later of the two. pid 1, the guard's
// own process and uid 0 are refused (ErrProtected); a process that does
// not exist is ErrGone.
func (g *Guard) Quarantine(pid int32, uid uint32, byUID bool, until time.Time, reason string) error {
	if pid <= 1 || int(pid) == os.Getpid() {
		return fmt.Errorf("%w: pid %d", ErrProtected, pid)
	}
	if byUID && uid == 0 {
		return fmt.Errorf("%w: uid 0 (quarantine the process instead)", ErrProtected)
	}
	start, err := procStart(pid)
	if err != nil {
		return fmt.Errorf("%w: pid %d: %w", ErrGone, pid, err)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	next := g.copyLocked()
	now := g.now()
	add := func(m map[int32]*entry, key int32, e Entry) {
		if old := m[key]; old != nil && old.Start == e.Start {
			e.Until = maxTime(e.Until, old.Until)
			e.Since = old.Since
			ne := &entry{Entry: e}
			ne.refused.Store(old.refused.Load())
			m[key] = ne
			return
		}
		m[key] = &entry{Entry: e}
	}
	add(next.pids, pid, Entry{PID: pid, Start: start, UID: uid, Until: until, Reason: reason, Since: now})
	if byUID {
		e := Entry{UID: uid, ByUID: true, Until: until, Reason: reason, Since: now}
		if old := next.uids[uid]; old != nil {
			e.Until, e.Since = maxTime(e.Until, old.Until), old.Since
			ne := &entry{Entry: e}
			ne.refused.Store(old.refused.Load())
			next.uids[uid] = ne
		} else {
			next.uids[uid] = &entry{Entry: e}
		}
	}
	g.log.Warn("guard: quarantined", "pid", pid, "uid", uid, "by_uid", byUID, "until", until, "reason", reason)
	return g.storeLocked(next)
}

// Release removes process pid (0: none) and, with byUID, user uid from
// the list. Releasing what is not listed is ErrNotListed.
func (g *Guard) Release(pid int32, uid uint32, byUID bool) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	next := g.copyLocked()
	found := false
	if _, ok := next.pids[pid]; ok && pid != 0 {
		delete(next.pids, pid)
		found = true
	}
	if _, ok := next.uids[uid]; ok && byUID {
		delete(next.uids, uid)
		found = true
	}
	if !found {
		return fmt.Errorf("%w: pid %d uid %d", ErrNotListed, pid, uid)
	}
	g.log.Info("guard: released", "pid", pid, "uid", uid, "by_uid", byUID)
	return g.storeLocked(next)
}

// List returns the entries, processes first, by pid and uid.
func (g *Guard) List() []Entry {
	l := g.cur.Load()
	if l == nil {
		return []Entry{}
	}
	out := make([]Entry, 0, len(l.pids)+len(l.uids))
	for _, e := range l.pids {
		x := e.Entry
		x.Refused = e.refused.Load()
		out = append(out, x)
	}
	for _, e := range l.uids {
		x := e.Entry
		x.Refused = e.refused.Load()
		out = append(out, x)
	}
	slices.SortFunc(out, func(a, b Entry) int {
		switch {
		case a.ByUID != b.ByUID:
			if a.ByUID {
				return 1
			}
			return -1
		case a.PID != b.PID:
			return int(a.PID) - int(b.PID)
		}
		return int(a.UID) - int(b.UID)
	})
	return out
}

// Run drops expired entries and exited processes every second, and
// flushes the snapshots before destroy every FlushInterval, until ctx
// ends; it flushes once more and returns ctx.Err().
func (g *Guard) Run(ctx context.Context) error {
	prune := time.NewTicker(time.Second)
	defer prune.Stop()
	flush := time.NewTicker(FlushInterval)
	defer flush.Stop()
	for {
		select {
		case <-ctx.Done():
			g.Flush()
			return ctx.Err()
		case <-prune.C:
			g.Prune()
		case <-flush.C:
			g.Flush()
		}
	}
}

// Prune drops expired entries and processes that exited (or whose pid
// now names another process).
func (g *Guard) Prune() {
	l := g.cur.Load()
	if l == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	next := g.copyLocked()
	now := g.now()
	changed := false
	for pid, e := range next.pids {
		if start, err := procStart(pid); !now.Before(e.Until) || err != nil || start != e.Start {
			delete(next.pids, pid)
			changed = true
			g.log.Info("guard: released", "pid", pid, "expired", !now.Before(e.Until), "refused", e.refused.Load())
		}
	}
	for uid, e := range next.uids {
		if !now.Before(e.Until) {
			delete(next.uids, uid)
			changed = true
			g.log.Info("guard: released", "uid", uid, "expired", true, "refused", e.refused.Load())
		}
	}
	if changed {
		if err := g.storeLocked(next); err != nil {
			g.log.Warn("guard: cannot save the list", "err", err)
		}
	}
}

// copyLocked returns a copy of the current list (entries shared).
func (g *Guard) copyLocked() *list {
	n := &list{pids: map[int32]*entry{}, uids: map[uint32]*entry{}}
	if l := g.cur.Load(); l != nil {
		for k, v := range l.pids {
			n.pids[k] = v
		}
		for k, v := range l.uids {
			n.uids[k] = v
		}
	}
	return n
}

// storeLocked makes next current (nil when empty) and saves it.
func (g *Guard) storeLocked(next *list) error {
	if len(next.pids)+len(next.uids) == 0 {
		g.cur.Store(nil)
	} else {
		g.cur.Store(next)
	}
	return g.saveLocked()
}

const fileName = "guard.json"

type fileData struct {
	Entries []Entry `json:"entries"`
}

func (g *Guard) saveLocked() error {
	if g.dir == "" {
		return nil
	}
	data, _ := json.MarshalIndent(fileData{Entries: g.List()}, "", "  ")
	if err := atomicfile.Write(filepath.Join(g.dir, fileName), data, 0o600); err != nil {
		return fmt.Errorf("guard: save: %w", err)
	}
	return nil
}

// load reads guard.json, keeping the entries that still hold.
func (g *Guard) load() error {
	data, err := os.ReadFile(filepath.Join(g.dir, fileName))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("guard: %w", err)
	}
	var fd fileData
	if err := json.Unmarshal(data, &fd); err != nil {
		return fmt.Errorf("guard: %s: %w", fileName, err)
	}
	next := &list{pids: map[int32]*entry{}, uids: map[uint32]*entry{}}
	now := g.now()
	for _, e := range fd.Entries {
		if !now.Before(e.Until) {
			continue
		}
		ne := &entry{Entry: e}
		ne.refused.Store(e.Refused)
		if e.ByUID {
			next.uids[e.UID] = ne
			continue
		}
		if start, err := procStart(e.PID); err != nil || start != e.Start {
			continue
		}
		next.pids[e.PID] = ne
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.storeLocked(next)
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// procStart returns the start time of pid (field 22 of /proc/PID/stat).
func procStart(pid int32) (string, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(int(pid)) + "/stat")
	if err != nil {
		return "", err
	}
	_, start, ok := procinfo.ParseStat(data)
	if !ok {
		return "", fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	return strconv.FormatUint(start, 10), nil
}
