package fanotify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/semprop/semprop/internal/capture"
	"github.com/semprop/semprop/internal/capture/procinfo"
)

const (
	// readBufSize is the size of one read(2) from the kernel queue.
	readBufSize = 128 << 10
	// maxPending bounds what a rescan drains from the kernel queue into
	// memory (about 600,000 fanotify records) before it lets the queue fill.
	maxPending = 64 << 20
)

// readRetry is how long the reader waits after a read of the kernel queue
// failed for want of a resource (descriptors, memory) before it reads again.
const readRetry = 10 * time.Millisecond

// transient reports whether a failed read of the kernel queue may succeed
// later: the process or the system was out of descriptors or memory.
func transient(err error) bool {
	return err == unix.EMFILE || err == unix.ENFILE || err == unix.ENOMEM || err == unix.ENOBUFS
}

// backend is one kernel interface (fanotify or inotify) behind a Watcher.
type backend interface {
	fd() int
	// handle processes one read's worth of bytes.
	handle(buf []byte, now time.Time)
	// idle is called when the kernel queue is empty. It returns how soon
	// the reader should look again even if nothing arrives (0: no need).
	idle(now time.Time) time.Duration
	close()
}

// Watcher is the kernel boundary: it watches a directory tree on its backing
// file system and reports each logical operation to the sink as a
// capture.Op with Boundary event.BoundaryKernel.
//
// Run reads and emits on the calling goroutine; the sink is only ever called
// from there. Close, Mode, Stats, Pause and Resume are safe to call from any
// goroutine at any time.
type Watcher struct {
	root string
	log  *slog.Logger
	mode string
	c    counters
	t    *tracker
	be   backend

	wakeFD  int           // eventfd that interrupts the poll (Close, ctx done)
	stop    chan struct{} // closed by Close: ends a nap
	delay   time.Duration
	shadows bool // Options.Shadows
	closed  atomic.Bool

	// procs is Options.Procs; win bounds when the records of the batch
	// being processed were queued (reader goroutine only): after the last
	// read that found the queue empty began, before the batch's read
	// returned.
	procs *procinfo.Cache
	win   procinfo.Window

	// mu orders the lifecycle: the kernel descriptors are released exactly
	// once, by Close when Run is not running, else by Run as it returns.
	mu       sync.Mutex
	running  bool
	ran      bool
	released bool

	// gate is held by the reader while it reads and processes one batch,
	// and by Pause until Resume: while paused, nothing is read.
	gate   sync.Mutex
	paused atomic.Bool

	// pending holds what a rescan drained from the kernel queue, to be
	// processed right after it (reader goroutine only).
	pending      [][]byte
	pendingBytes int
}

// New sets up a watcher on opts.Root: a fanotify filesystem mark where the
// kernel permits it, else (not root, a file system without file handles, …)
// inotify with recursive watches and a warning in the log. The tree is
// indexed once before New returns; events are reported from the moment New
// returns, queued in the kernel until Run reads them.
func New(opts Options) (*Watcher, error) {
	if opts.Sink == nil {
		return nil, ErrNoSink
	}
	if !filepath.IsAbs(opts.Root) {
		return nil, fmt.Errorf("%w: %q", ErrNoRoot, opts.Root)
	}
	root, err := filepath.EvalSymlinks(filepath.Clean(opts.Root))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoRoot, err)
	}
	var st unix.Stat_t
	if err := unix.Stat(root, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil, fmt.Errorf("%w: %q", ErrNoRoot, root)
	}
	w := &Watcher{root: root, log: opts.Logger, delay: opts.BatchDelay, shadows: opts.Shadows, stop: make(chan struct{}), procs: opts.Procs}
	if w.procs != nil {
		w.win.NotBefore = procinfo.Now() // no record is older than the group
	}
	if w.delay == 0 {
		w.delay = defaultBatchDelay
	}
	if w.log == nil {
		w.log = slog.Default()
	}
	w.t = newTracker(root, opts.Sink, &w.c, opts.RescanBackoff, w.log)
	w.t.drain = w.drain

	w.wakeFD, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("fanotify: eventfd: %w", err)
	}
	// Every descriptor the reader needs for good (the group, Root's, the
	// eventfd) is open from here on; the spare covers the one it opens
	// for a moment now and then.
	w.t.fds = newFDReserve(w.wakeFD, &w.c)
	if !opts.ForceInotify {
		be, ferr := newFanotify(w, opts.UnlimitedQueue)
		if ferr == nil {
			w.be, w.mode = be, "fanotify"
			w.t.buildIndex()
			return w, nil
		}
		w.log.Warn("fanotify: kernel capture with fanotify is not available; falling back to inotify "+
			"(no process context, one watch per directory)", "root", root, "err", ferr)
	}
	be, err := newInotify(w)
	if err != nil {
		unix.Close(w.wakeFD)
		w.t.fds.release()
		return nil, fmt.Errorf("fanotify: inotify fallback: %w", err)
	}
	w.be, w.mode = be, "inotify"
	return w, nil
}

// Mode returns "fanotify" or "inotify".
func (w *Watcher) Mode() string { return w.mode }

// Root returns the watched directory, with symbolic links resolved: the
// prefix of every path the watcher reports.
func (w *Watcher) Root() string { return w.root }

// Stats returns a snapshot of the counters.
func (w *Watcher) Stats() Stats {
	s := w.c.snapshot(w.mode)
	return s
}

// Pause stops the reader after the batch it is processing, until Resume:
// the kernel queue fills and eventually overflows. It is a test hook.
func (w *Watcher) Pause() {
	if w.paused.CompareAndSwap(false, true) {
		w.gate.Lock()
	}
}

// Resume lets a paused reader continue.
func (w *Watcher) Resume() {
	if w.paused.CompareAndSwap(true, false) {
		w.gate.Unlock()
	}
}

// Close stops Run and releases the kernel resources. It is safe to call more
// than once and concurrently with Run.
func (w *Watcher) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.released || w.closed.Load() && w.running {
		return nil
	}
	if !w.closed.Swap(true) {
		close(w.stop)
	}
	if w.running {
		w.wake() // Run releases as it returns
		w.Resume()
		return nil
	}
	w.releaseLocked()
	return nil
}

func (w *Watcher) releaseLocked() {
	if !w.released {
		w.released = true
		w.be.close()
		unix.Close(w.wakeFD)
		w.t.fds.release()
	}
}

// clearWake consumes a wake-up that interrupted a poll.
func (w *Watcher) clearWake() {
	var b [8]byte
	unix.Read(w.wakeFD, b[:])
}

func (w *Watcher) wake() {
	var one = [8]byte{1}
	unix.Write(w.wakeFD, one[:])
}

// drain reads what the kernel queued into memory, without processing it, so
// that a long rescan does not let the queue overflow again. It is called by
// the rescan, on the reader goroutine.
func (w *Watcher) drain() {
	fd := w.be.fd()
	for w.pendingBytes < maxPending {
		b := make([]byte, readBufSize)
		n, err := readFD(fd, b)
		if err != nil && err != unix.EAGAIN && err != unix.EINTR {
			// Run meets the error again if it lasts.
			w.t.lose(capture.ReasonOf(err, capture.ReasonRead), 0)
			return
		}
		if n <= 0 || err != nil {
			return
		}
		w.c.reads.Add(1)
		w.c.drained.Add(uint64(n))
		w.pending = append(w.pending, b[:n:n])
		w.pendingBytes += n
	}
}

// Run reads the kernel queue and emits ops until ctx is done or Close is
// called; then it returns nil. It returns an error when the kernel interface
// fails. Run may be called once.
func (w *Watcher) Run(ctx context.Context) error {
	w.mu.Lock()
	switch {
	case w.closed.Load():
		w.mu.Unlock()
		return ErrClosed
	case w.ran:
		w.mu.Unlock()
		return errors.New("fanotify: Run called twice")
	}
	w.running, w.ran = true, true
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		w.running = false
		if w.closed.Load() {
			w.releaseLocked()
		}
		w.mu.Unlock()
	}()
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // owned: stopped by done, waited for below
		defer wg.Done()
		select {
		case <-ctx.Done():
			w.Close()
		case <-done:
		}
	}()
	defer func() {
		close(done)
		wg.Wait()
	}()

	buf := make([]byte, readBufSize)
	fd := w.be.fd()
	// napping: the queue is busy, read it in batches (see
	// Options.BatchDelay). The reader starts napping when two reads with
	// data come less than the delay apart, and stops when a nap found
	// nothing: the first events after a quiet period are still read at
	// once, while their processes most likely still exist (comm and exe
	// come from /proc, and the actor is then cached).
	napping, found := false, false
	var recheck time.Duration // what the last idle asked for
	readFailing := false      // the last read failed for want of a resource
	var lastData time.Time
	nap := time.NewTimer(time.Hour)
	defer nap.Stop()
	w.gate.Lock()
	w.t.reportLosses() // noted by New (inotify watches that failed)
	w.gate.Unlock()
	for !w.closed.Load() {
		if due := w.t.rescanPending(); !due.IsZero() && !time.Now().Before(due) {
			w.gate.Lock()
			w.t.rescan()
			w.t.reportLosses() // noted during the rescan
			w.gate.Unlock()
		}
		w.gate.Lock()
		if w.closed.Load() {
			w.gate.Unlock()
			break
		}
		if len(w.pending) > 0 {
			if w.procs != nil {
				w.win.NotAfter = procinfo.Now() // later than the drain: still a bound
			}
			for i, b := range w.pending {
				w.be.handle(b, time.Now())
				w.pending[i] = nil
			}
			w.pending, w.pendingBytes = w.pending[:0], 0
			w.gate.Unlock()
			continue
		}
		var began int64
		if w.procs != nil {
			began = procinfo.Now()
		}
		n, err := readFD(fd, buf)
		if n > 0 {
			if w.procs != nil {
				w.win.NotAfter = procinfo.Now()
			}
			now := time.Now()
			w.c.reads.Add(1)
			w.be.handle(buf[:n], now)
			if !napping && now.Sub(lastData) < w.delay {
				napping = true
			}
			lastData, found = now, true
		}
		fatal := false
		switch err {
		case nil, unix.EINTR:
		case unix.EAGAIN:
			w.win.NotBefore = began // the queue was empty after this
			recheck = w.be.idle(time.Now())
		default:
			// The records a failed read took off the queue are lost:
			// report it and rescan (or, if the queue cannot be read any
			// more, report it and stop).
			w.t.lose(capture.ReasonOf(err, capture.ReasonRead), 0)
			w.t.reportLosses()
			fatal = !transient(err)
		}
		w.gate.Unlock()
		if err == nil || err == unix.EAGAIN {
			readFailing = false
		}
		switch {
		case err == nil || err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
		case fatal:
			return fmt.Errorf("fanotify: read %s queue: %w", w.mode, err)
		default:
			if !readFailing { // once per run of failures
				w.log.Warn("fanotify: reading the kernel queue failed; retrying", "mode", w.mode, "err", err)
			}
			readFailing = true
			nap.Reset(readRetry)
			select {
			case <-nap.C:
			case <-w.stop:
			}
			continue
		}
		if napping && !found {
			napping = false // a nap found nothing: block again
		}
		found = false
		if napping { // only with a positive delay
			// The queue is drained but busy: let it fill for a while
			// without a poll that every queued event would wake (see
			// Options.BatchDelay); only Close interrupts. The nap is a Go
			// timer, not a timed poll: a goroutine parked on a timer holds
			// no thread, while a thread asleep in a system call makes the
			// scheduler hand its P to another thread and take one back
			// after — two thread wake-ups per nap.
			nap.Reset(w.delay)
			select {
			case <-nap.C:
			case <-w.stop:
			}
			continue
		}
		timeout := -1
		if due := w.t.rescanPending(); !due.IsZero() {
			timeout = max(0, int(time.Until(due).Milliseconds())+1)
		}
		if recheck > 0 {
			if ms := int((recheck + time.Millisecond - 1) / time.Millisecond); timeout < 0 || ms < timeout {
				timeout = ms
			}
			recheck = 0
		}
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}, {Fd: int32(w.wakeFD), Events: unix.POLLIN}}
		if _, err := unix.Poll(pfd, timeout); err != nil && err != unix.EINTR {
			return fmt.Errorf("fanotify: poll: %w", err)
		}
		if pfd[1].Revents != 0 {
			w.clearWake()
		}
	}
	return nil
}
