package fusefs

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/capture"
)

// invalQueueLen bounds the invalidation queue; requests beyond it are
// dropped and counted (the cache then expires by its timeout).
const invalQueueLen = 4096

// FS is a mounted loopback file system that reports mutating operations.
// All methods are safe for concurrent use.
type FS struct {
	lock     *os.File // flock held while serving (lock_linux.go)
	log      *slog.Logger
	sink     capture.Sink
	backing  string // absolute, clean
	mount    string // absolute, clean
	procs    *procCache
	server   *fuse.Server
	root     *fs.Inode
	connID   string // minor of the mount's device: /sys/fs/fuse/connections/ID
	fellBack atomic.Bool

	onRelease   func(done bool) // Options.onRelease
	passthrough atomic.Bool     // in effect
	ptAsked     bool            // Options.Passthrough: the kernel may back files directly
	guard       Guard           // Options.Guard, nil without one

	// treeGen changes after every rename and rmdir through the mount: a
	// directory's cached path (node.dir) is good while it is unchanged.
	treeGen atomic.Uint64

	inval chan invalReq
	stop  chan struct{}
	wg    sync.WaitGroup

	st counters

	mu        sync.Mutex // guards unmounted
	unmounted bool
}

type counters struct {
	ops                                                [capture.KindSymlink + 1]atomic.Uint64
	writeCalls, writesCoalesced, bytesWritten          atomic.Uint64
	passthroughWrites, unknownCaller, refused          atomic.Uint64
	invQueued, invSent, invFailed, invSkipped, invDrop atomic.Uint64
}

// Mount mounts a loopback of opts.Backing at opts.Mountpoint and starts
// serving it. A dead mount left at the mount point by a crashed server
// (ENOTCONN) is detached first, with a log line; a live fuse mount there,
// of another semprop daemon or of another file system, is
// ErrMountpointBusy, and directories that contain each other are
// ErrOverlap. Nothing is created before every check has passed.
// It must run as root (direct mount). The sink is called from FUSE handlers,
// concurrently.
func Mount(opts Options) (*FS, error) {
	if opts.Sink == nil {
		return nil, ErrNoSink
	}
	lg := opts.Logger
	if lg == nil {
		lg = slog.Default()
	}
	lg = lg.With("component", "fusefs")
	backing, err := absDir(opts.Backing, false)
	if err != nil {
		return nil, err
	}
	mp, err := filepath.Abs(opts.Mountpoint)
	if err != nil {
		return nil, fmt.Errorf("mount point %s: %w", opts.Mountpoint, err)
	}
	if overlap(backing, mp) {
		return nil, fmt.Errorf("%w: %s, %s", ErrOverlap, backing, mp)
	}
	if err := clearStale(mp, lg); err != nil {
		return nil, err
	}
	lock, err := lockMount(mp)
	if err != nil {
		return nil, err
	}
	created, err := createMountpoint(mp, opts.CreateMountpoint, lg)
	if err != nil {
		unlockMount(lock)
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			removeCreated(mp, created, lg)
			unlockMount(lock)
		}
	}()
	if _, err := absDir(mp, true); err != nil {
		return nil, err
	}

	f := &FS{
		lock:    lock,
		log:     lg,
		sink:    opts.Sink,
		backing: backing,
		mount:   mp,
		procs:   newProcCache(),
		inval:   make(chan invalReq, invalQueueLen),
		stop:    make(chan struct{}),
		ptAsked: opts.Passthrough,
		guard:   opts.Guard,

		onRelease: opts.onRelease,
	}
	f.procs.shared = opts.Procs
	var st syscall.Stat_t
	if err := syscall.Stat(backing, &st); err != nil {
		return nil, fmt.Errorf("stat backing %s: %w", backing, err)
	}
	// NewNode is deprecated in favour of NodeWrapChilder, which cannot
	// serve here: WrapChild gets no stat, and a node must know its backing
	// inode number (Op.Inode) from the lookup or create that made it; the
	// FUSE inode number differs from it when the backing tree spans file
	// systems, so it cannot be recovered later.
	//lint:ignore SA1019 see above; NodeWrapChilder lacks the stat
	lroot := &fs.LoopbackRoot{Path: backing, Dev: uint64(st.Dev), NewNode: f.newNode}
	rootNode := f.newNode(lroot, nil, "", &st)
	lroot.RootNode = rootNode

	et, at := timeout(opts.EntryTimeout, DefaultEntryTimeout), timeout(opts.AttrTimeout, DefaultAttrTimeout)
	var neg time.Duration // failed lookups are never cached (see package doc)
	// go-fuse logs diagnostics (and, with Debug, every request) here.
	level := slog.LevelWarn
	if opts.Debug {
		level = slog.LevelInfo
	}
	stdlog := slog.NewLogLogger(lg.Handler(), level)
	fopts := &fs.Options{
		MountOptions:    MountOptions(opts.Passthrough, opts.Debug, stdlog),
		EntryTimeout:    &et,
		AttrTimeout:     &at,
		NegativeTimeout: &neg,
		Logger:          stdlog,
	}
	// fs.Mount, with the raw file system wrapped so that the tree
	// generation moves once the library has updated its tree.
	server, err := fuse.NewServer(treeHook{fs.NewNodeFS(rootNode, fopts), &f.treeGen}, mp, &fopts.MountOptions)
	if err == nil {
		go server.Serve()
		err = server.WaitMount()
	}
	if err != nil {
		return nil, fmt.Errorf("mount %s at %s: %w", backing, mp, err)
	}
	f.server = server
	f.root = rootNode.EmbeddedInode()
	if id, ok := mountConnID(mp); ok {
		f.connID = id
	}
	if opts.Passthrough {
		if err := probe(server); err != nil {
			lg.Warn("fuse passthrough unavailable; data reads and writes go through the server", "err", err)
		} else {
			f.passthrough.Store(true)
		}
	}
	f.wg.Add(1)
	go f.invalidator()
	ok = true
	lg.Info("mounted", "backing", backing, "mountpoint", mp, "passthrough", f.passthrough.Load(),
		"entry_timeout", et, "attr_timeout", at)
	return f, nil
}

// MountOptions returns the go-fuse mount options Mount uses: a direct mount
// (no fusermount) as "semprop", open to other users with the kernel checking
// permissions (default_permissions: the server runs as root), passthrough
// capability only when asked for, and never a writeback cache (it would hide
// the writer: cached writes reach the server with pid 0). Exported so a
// benchmark can mount a plain loopback the same way.
func MountOptions(passthrough, debug bool, logger *log.Logger) fuse.MountOptions {
	mo := fuse.MountOptions{
		AllowOther:           true,
		Options:              []string{"default_permissions"},
		FsName:               "semprop",
		Name:                 "semprop",
		DirectMount:          true,
		DirectMountStrict:    true,
		Debug:                debug,
		Logger:               logger,
		DisabledCapabilities: fuse.CAP_WRITEBACK_CACHE,
		// O_TRUNC travels with OPEN, so the truncation belongs to the
		// handle; otherwise the kernel sends a SETATTR without one first.
		ExtraCapabilities: fuse.CAP_ATOMIC_O_TRUNC,
	}
	if !passthrough {
		mo.DisabledCapabilities |= fuse.CAP_PASSTHROUGH
	}
	return mo
}

// overlap reports whether one of the directories contains the other, after
// resolving symbolic links (the mount point's last element is not resolved:
// it may be a dead mount).
func overlap(backing, mp string) bool {
	if b, err := filepath.EvalSymlinks(backing); err == nil {
		backing = b
	}
	if d, err := filepath.EvalSymlinks(filepath.Dir(mp)); err == nil {
		mp = filepath.Join(d, filepath.Base(mp))
	}
	return within(mp, backing) || within(backing, mp)
}

// within reports whether p is dir or below it (both absolute and clean).
func within(p, dir string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

func timeout(d, def time.Duration) time.Duration {
	switch {
	case d == 0:
		return def
	case d < 0:
		return 0
	}
	return d
}

func absDir(p string, isMount bool) (string, error) {
	what := "backing"
	if isMount {
		what = "mount point"
	}
	a, err := filepath.Abs(p)
	if err != nil {
		return "", fmt.Errorf("%s %s: %w", what, p, err)
	}
	fi, err := os.Stat(a)
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("%s %s: %w", what, a, ErrNotDir)
	}
	return a, nil
}

// probe is probePassthrough; tests replace it to simulate a kernel that
// refuses passthrough.
var probe = probePassthrough

// probePassthrough asks the kernel to register a backing file (a memfd, so
// no file system sees it) and releases it again.
func probePassthrough(server *fuse.Server) error {
	fd, err := unix.MemfdCreate("semprop-passthrough-probe", unix.MFD_CLOEXEC)
	if err != nil {
		return fmt.Errorf("memfd: %w", err)
	}
	defer unix.Close(fd)
	id, errno := server.RegisterBackingFd(&fuse.BackingMap{Fd: int32(fd)})
	if errno != 0 {
		return fmt.Errorf("register backing fd: %w", errno)
	}
	if errno := server.UnregisterBackingFd(id); errno != 0 {
		return fmt.Errorf("unregister backing fd: %w", errno)
	}
	return nil
}

// Unmount stops the invalidation goroutine and unmounts. If the mount is busy
// it is detached lazily (MNT_DETACH) and, where fusectl is mounted, the
// connection is aborted so the server stops. Calling it again returns nil.
func (f *FS) Unmount() error {
	f.mu.Lock()
	if f.unmounted {
		f.mu.Unlock()
		return nil
	}
	f.unmounted = true
	f.mu.Unlock()

	close(f.stop)
	f.wg.Wait()

	defer unlockMount(f.lock)
	err := f.server.Unmount()
	if err == nil {
		f.log.Info("unmounted", "mountpoint", f.mount)
		return nil
	}
	f.log.Warn("unmount failed; detaching lazily", "mountpoint", f.mount, "err", err)
	if err := unix.Unmount(f.mount, unix.MNT_DETACH); err != nil && err != unix.EINVAL {
		return fmt.Errorf("lazy unmount %s: %w", f.mount, err)
	}
	abortConn(f.connID, f.log)
	return nil
}

// Wait blocks until the server has stopped (after Unmount, or when the mount
// was removed from outside).
func (f *FS) Wait() { f.server.Wait() }

// Passthrough reports whether FUSE passthrough is in effect.
func (f *FS) Passthrough() bool { return f.passthrough.Load() }

// Mountpoint returns the absolute mount point.
func (f *FS) Mountpoint() string { return f.mount }

// Stats returns a snapshot of the counters.
func (f *FS) Stats() Stats {
	var s Stats
	for i := range s.Ops {
		s.Ops[i] = f.st.ops[i].Load()
	}
	s.WriteCalls = f.st.writeCalls.Load()
	s.WritesCoalesced = f.st.writesCoalesced.Load()
	s.BytesWritten = f.st.bytesWritten.Load()
	s.PassthroughWrites = f.st.passthroughWrites.Load()
	s.UnknownCaller = f.st.unknownCaller.Load()
	s.Refused = f.st.refused.Load()
	s.InvalidationsQueued = f.st.invQueued.Load()
	s.InvalidationsSent = f.st.invSent.Load()
	s.InvalidationsFailed = f.st.invFailed.Load()
	s.InvalidationsSkipped = f.st.invSkipped.Load()
	s.InvalidationsDropped = f.st.invDrop.Load()
	return s
}

// newOp starts an Op with the caller's context from a FUSE request context.
func (f *FS) newOp(ctx context.Context, k capture.Kind) *capture.Op {
	op := &capture.Op{Kind: k, Boundary: event.BoundaryFUSE, Time: time.Now()}
	if c, ok := fuse.FromContext(ctx); ok {
		f.setCaller(op, c)
	}
	return op
}

func (f *FS) setCaller(op *capture.Op, c *fuse.Caller) {
	op.UID, op.GID = c.Uid, c.Gid
	op.Known |= event.HasUID | event.HasGID
	if c.Pid == 0 {
		f.st.unknownCaller.Add(1)
		return
	}
	op.TID = int32(c.Pid)
	op.Known |= event.HasTID
	pi, ok := f.procs.lookup(int32(c.Pid))
	if !ok {
		f.st.unknownCaller.Add(1)
		return
	}
	op.PID, op.Comm, op.Exe = pi.tgid, pi.comm, pi.exe
	op.Known |= event.HasPID
}

func (f *FS) emit(op *capture.Op) {
	if int(op.Kind) < len(f.st.ops) {
		f.st.ops[op.Kind].Add(1)
	}
	f.sink.Emit(op)
}

// mountPath turns a path relative to the backing root into one under the
// mount point.
func (f *FS) mountPath(rel string) string {
	if rel == "" {
		return f.mount
	}
	return f.mount + "/" + rel
}

// fellBackFromPassthrough records that data reached the server although
// passthrough was believed active (the kernel refused a backing file).
func (f *FS) fellBackFromPassthrough() {
	if f.fellBack.CompareAndSwap(false, true) {
		f.passthrough.Store(false)
		f.log.Warn("write reached the server on a passthrough mount; passthrough is not in effect for all files")
	}
}

// treeHook moves the tree generation after each operation that changes
// the path of a directory: a rename (of anything: a file's rename cannot be
// told apart without a lookup) and an rmdir. The library updates its inode
// tree after the node's handler returned, so the generation must move
// after that, here: a path computed while the tree was changing is then
// never trusted.
type treeHook struct {
	fuse.RawFileSystem
	gen *atomic.Uint64
}

func (h treeHook) Rename(cancel <-chan struct{}, in *fuse.RenameIn, oldName, newName string) fuse.Status {
	st := h.RawFileSystem.Rename(cancel, in, oldName, newName)
	h.gen.Add(1)
	return st
}

func (h treeHook) Rmdir(cancel <-chan struct{}, header *fuse.InHeader, name string) fuse.Status {
	st := h.RawFileSystem.Rmdir(cancel, header, name)
	h.gen.Add(1)
	return st
}

// createMountpoint creates mp and its missing parents when it does not
// exist and create is set, and returns the topmost directory it created
// ("" when none).
func createMountpoint(mp string, create bool, lg *slog.Logger) (string, error) {
	if _, err := os.Lstat(mp); err == nil || !errors.Is(err, os.ErrNotExist) || !create {
		return "", nil // absDir reports what is wrong
	}
	top := mp
	for p := filepath.Dir(mp); p != filepath.Dir(p); p = filepath.Dir(p) {
		if _, err := os.Lstat(p); err == nil {
			break
		}
		top = p
	}
	if err := os.MkdirAll(mp, 0o755); err != nil {
		return "", fmt.Errorf("create mount point %s: %w", mp, err)
	}
	lg.Info("created the missing mount point", "mountpoint", mp)
	return top, nil
}

// removeCreated removes what createMountpoint created for mp, after a
// failed Mount: the empty directories from mp up to top (never anything
// with content).
func removeCreated(mp, top string, lg *slog.Logger) {
	if top == "" {
		return
	}
	for p := mp; ; p = filepath.Dir(p) {
		if err := os.Remove(p); err != nil {
			lg.Warn("cannot remove the mount point this start created", "dir", p, "err", err)
			return
		}
		if p == top || p == filepath.Dir(p) {
			return
		}
	}
}
