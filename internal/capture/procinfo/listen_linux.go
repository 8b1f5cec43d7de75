package procinfo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
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
)

// listener reads the process connector socket into a Cache.
type listener struct {
	c    *Cache
	log  *slog.Logger
	wake int // eventfd: ends run

	// through is a CLOCK_MONOTONIC time at which the socket was seen
	// empty: every event from before it has been applied.
	through atomic.Int64

	// rmu serializes reading the socket and applying what was read (the
	// goroutine and catch-ups by lookups); it is taken before Cache.mu.
	rmu    sync.Mutex
	fd     int
	buf    []byte
	closed bool

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
	l := &listener{c: c, log: c.log, buf: make([]byte, 64<<10)}
	if err := l.open(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	c.sync = l.catchUp
	c.close = l.close
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
	pfd := []unix.PollFd{{Fd: int32(l.fd), Events: unix.POLLIN}, {Fd: int32(l.wake), Events: unix.POLLIN}}
	lastSweep := Now()
	for {
		pfd[0].Revents, pfd[1].Revents = 0, 0
		if _, err := unix.Poll(pfd, int(sweepEvery.Milliseconds())); err != nil && err != unix.EINTR {
			l.log.Error("procinfo: poll failed; process identities are read from /proc from now on", "err", err)
			return
		}
		if pfd[1].Revents != 0 {
			return
		}
		l.rmu.Lock()
		err := l.drainLocked()
		l.rmu.Unlock()
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

// drainLocked applies everything queued on the socket. rmu must be held.
func (l *listener) drainLocked() error {
	if l.closed {
		return nil
	}
	for {
		t0 := Now()
		n, from, err := unix.Recvfrom(l.fd, l.buf, 0)
		switch err {
		case nil:
		case unix.EAGAIN:
			l.through.Store(t0)
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

// catchUp applies the events queued before notAfter, if the listener has
// not yet: the process of an operation read from another queue has its
// fork and exec in this one.
func (l *listener) catchUp(notAfter int64) {
	if l.through.Load() >= notAfter {
		return
	}
	l.rmu.Lock()
	if l.through.Load() < notAfter {
		if err := l.drainLocked(); err != nil {
			l.through.Store(1<<63 - 1) // run logs it and stops; do not retry on every lookup
		}
	}
	l.rmu.Unlock()
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
		l.rmu.Lock()
		l.closed = true
		unix.Close(l.fd)
		unix.Close(l.wake)
		l.rmu.Unlock()
	})
}
