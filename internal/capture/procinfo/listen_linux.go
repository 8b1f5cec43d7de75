package procinfo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

const (
	// rcvBuf is the socket's receive buffer: room for about 50,000 events
	// while the listener is not scheduled.
	rcvBuf = 8 << 20
	// ackTimeout bounds the wait for the kernel's acknowledgement of the
	// listen request.
	ackTimeout = 2 * time.Second
	// sweepEvery is how often exited processes past the retention go.
	sweepEvery = time.Second
	// listenerNice is the listener thread's nice value where it cannot
	// have a real-time priority.
	listenerNice = -10
	schedFIFO    = 1
	// catchUpWait bounds how long a lookup waits for the listener.
	catchUpWait = 100 * time.Millisecond
)

// listener reads the process connector socket into a Cache.
type listener struct {
	c    *Cache
	log  *slog.Logger
	wake int // eventfd: ends run

	// through is a CLOCK_MONOTONIC time at which the socket was seen
	// empty with nothing being applied: every event from before it has
	// been applied.
	through  atomic.Int64
	draining atomic.Bool // the listener took messages off the socket that it has not applied yet

	// waiters are lookups waiting for the listener to catch up; they wait
	// for progress, which the listener closes (and replaces) after each
	// drain while there are any.
	waiters  atomic.Int32
	pmu      sync.Mutex
	progress chan struct{}

	fd    int // owned by run; closed by close after run returned
	buf   []byte
	execs *execRecords // nil when the kernel refuses the group; owned by run

	stop sync.Once
	wg   sync.WaitGroup
}

// Start subscribes to the kernel's process connector (netlink
// NETLINK_CONNECTOR, CN_IDX_PROC; it needs CAP_NET_ADMIN in the initial
// user and pid namespaces) and returns a Cache it keeps up to date until
// ctx is done or Close is called. When the connector is not available it
// returns an error wrapping ErrUnavailable; callers then read /proc at
// lookup, as without a cache. log may be nil.
func Start(ctx context.Context, log *slog.Logger) (*Cache, error) {
	c := newCache(procfs{root: "/proc"}, log)
	l := &listener{c: c, log: c.log, buf: make([]byte, 64<<10), progress: make(chan struct{})}
	if err := l.open(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	c.sync = l.catchUp
	c.close = l.close
	if l.execs = openExecRecords(); l.execs != nil {
		c.execs = l.execs
	}
	done := make(chan struct{})
	c.done = done
	l.wg.Add(2)
	go func() { // owned: ends with run, waited for by close
		defer l.wg.Done()
		l.run()
	}()
	go func() { // owned: ends with ctx or close, waited for by close
		defer l.wg.Done()
		select {
		case <-ctx.Done():
			l.signal()
		case <-done:
		}
	}()
	return c, nil
}

// open sets the socket up and waits for the kernel's acknowledgement: a
// requester outside the initial namespaces gets none (and no events).
func (l *listener) open() error {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_CONNECTOR)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			unix.Close(fd)
		}
	}()
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvBuf); err != nil {
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, rcvBuf)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: cnIdxProc}); err != nil {
		return fmt.Errorf("bind: %w", err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return fmt.Errorf("getsockname: %w", err)
	}
	port := sa.(*unix.SockaddrNetlink).Pid
	seq := uint32(os.Getpid())
	if err := unix.Sendto(fd, appendListen(nil, seq, port), 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("send listen request: %w", err)
	}
	l.fd = fd
	deadline := time.Now().Add(ackTimeout)
	var ackErr error
	acked := false
	for !acked {
		left := time.Until(deadline)
		if left <= 0 {
			return errors.New("the kernel did not acknowledge the listen request (not in the initial user and pid namespaces?)")
		}
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		if _, err := unix.Poll(pfd, int(left.Milliseconds())+1); err != nil && err != unix.EINTR {
			return fmt.Errorf("poll: %w", err)
		}
		n, from, err := unix.Recvfrom(fd, l.buf, 0)
		if err == unix.EAGAIN || err == unix.EINTR || err == unix.ENOBUFS {
			continue
		}
		if err != nil {
			return fmt.Errorf("receive: %w", err)
		}
		if nl, _ := from.(*unix.SockaddrNetlink); nl == nil || nl.Pid != 0 {
			continue
		}
		Parse(l.buf[:n], func(ev *Event) {
			switch {
			case ev.What == WhatNone:
				// The acknowledgement carries the connector's own sequence
				// number, not the request's (linux 6.18).
				acked = true
				if ev.Err != 0 {
					ackErr = fmt.Errorf("listen request refused: %w", unix.Errno(ev.Err))
				}
			case ev.What != WhatNone:
				l.c.apply(ev)
			}
		})
	}
	if ackErr != nil {
		return ackErr
	}
	l.wake, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return fmt.Errorf("eventfd: %w", err)
	}
	ok = true
	return nil
}

// run reads the socket until signalled.
func (l *listener) run() {
	// A process that lives a millisecond must be read while it lives: the
	// listener gets a thread of its own, with a higher priority than the
	// workload's (nice -10), so that it runs as soon as an event comes. The
	// thread ends with the goroutine (it stays locked). The priority is
	// SCHED_FIFO 1 where permitted (it preempts every ordinary thread
	// at once; its work per event is bounded and the kernel's real-time
	// throttling still applies), else nice -10.
	runtime.LockOSThread()
	defer l.through.Store(1<<63 - 1) // stopped: lookups must not wait for it
	defer l.notify()
	if err := unix.SchedSetAttr(0, &unix.SchedAttr{Policy: schedFIFO, Priority: 1}, 0); err != nil {
		if err := unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), listenerNice); err != nil {
			l.log.Debug("procinfo: cannot raise the listener's priority", "err", err)
		}
	}
	pfd := []unix.PollFd{{Fd: int32(l.fd), Events: unix.POLLIN}, {Fd: int32(l.wake), Events: unix.POLLIN}}
	if l.execs != nil {
		pfd = append(pfd, unix.PollFd{Fd: int32(l.execs.fd), Events: unix.POLLIN})
	}
	lastSweep := Now()
	for {
		for i := range pfd {
			pfd[i].Revents = 0
		}
		if _, err := unix.Poll(pfd, int(sweepEvery.Milliseconds())); err != nil && err != unix.EINTR {
			l.log.Error("procinfo: poll failed; process identities are read from /proc from now on", "err", err)
			return
		}
		if pfd[1].Revents != 0 {
			return
		}
		// Exec records first: each comes before its exec's connector event.
		l.execs.drain()
		err := l.drain()
		if err != nil {
			l.log.Error("procinfo: reading the process connector failed; process identities are read from /proc from now on", "err", err)
			return
		}
		if now := Now(); now-lastSweep >= int64(sweepEvery) {
			l.c.sweep(now)
			lastSweep = now
		}
	}
}

// drain applies everything queued on the socket. Only run calls it.
func (l *listener) drain() error {
	l.draining.Store(true)
	defer l.draining.Store(false)
	for {
		t0 := Now()
		n, from, err := unix.Recvfrom(l.fd, l.buf, 0)
		switch err {
		case nil:
		case unix.EAGAIN:
			l.through.Store(t0)
			if l.waiters.Load() > 0 {
				l.notify()
			}
			return nil
		case unix.EINTR:
			continue
		case unix.ENOBUFS:
			// The kernel dropped events: what the cache holds may be
			// stale. Start afresh.
			if l.c.lost.Add(1) == 1 {
				l.log.Warn("procinfo: the kernel dropped process events; the cache starts afresh (counted in the lost statistic)")
			}
			l.c.reset()
			continue
		default:
			return err
		}
		if nl, _ := from.(*unix.SockaddrNetlink); nl == nil || nl.Pid != 0 {
			continue
		}
		if err := Parse(l.buf[:n], l.c.apply); err != nil {
			l.c.malformed.Add(1)
		}
	}
}

// notify wakes the lookups waiting for progress.
func (l *listener) notify() {
	l.pmu.Lock()
	close(l.progress)
	l.progress = make(chan struct{})
	l.pmu.Unlock()
}

// caughtUp reports whether every event queued before notAfter has been
// applied: by the listener's last drain, or because the socket is empty now
// and the listener holds nothing it took off it. One poll(2) when the
// listener has not drained since notAfter.
func (l *listener) caughtUp(notAfter int64) bool {
	if l.through.Load() >= notAfter {
		return true
	}
	t0 := Now()
	pfd := []unix.PollFd{{Fd: int32(l.fd), Events: unix.POLLIN}}
	if n, err := unix.Poll(pfd, 0); err != nil || n != 0 || l.draining.Load() {
		return false
	}
	// Raise through to t0 unless the listener raised it further meanwhile.
	for {
		cur := l.through.Load()
		if cur >= t0 || l.through.CompareAndSwap(cur, t0) {
			return t0 >= notAfter || cur >= notAfter
		}
	}
}

// catchUp waits (at most catchUpWait) until the events queued before
// notAfter have been applied, and reports whether they were: the process
// of an operation read from another queue has its fork and exec in this
// one. The listener applies them; a lookup never reads the socket itself
// (the listener's thread has the higher priority; a lookup holding it up
// would defeat that).
func (l *listener) catchUp(notAfter int64) bool {
	if l.caughtUp(notAfter) {
		return true
	}
	l.waiters.Add(1)
	defer l.waiters.Add(-1)
	timer := time.NewTimer(catchUpWait)
	defer timer.Stop()
	for {
		l.pmu.Lock()
		ch := l.progress
		l.pmu.Unlock()
		if l.caughtUp(notAfter) {
			return true
		}
		select {
		case <-ch:
		case <-timer.C:
			l.c.slowCatchUp.Add(1)
			return false
		}
	}
}

func (l *listener) signal() {
	var one = [8]byte{1}
	unix.Write(l.wake, one[:])
}

// close stops the goroutines, waits for them and closes the socket.
func (l *listener) close() {
	l.stop.Do(func() {
		close(l.c.done)
		l.signal()
		l.wg.Wait()
		// No lookup polls the socket any more: through is at its maximum.
		unix.Close(l.fd)
		unix.Close(l.wake)
		l.execs.close()
	})
}
