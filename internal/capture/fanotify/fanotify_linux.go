package fanotify

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"golang.org/x/sys/unix"

	"github.com/semprop/semprop/internal/capture"
)

// The group and mark, as this kernel (6.18) accepts them; see doc.go.
const (
	fanInitFlags = unix.FAN_CLASS_NOTIF | unix.FAN_CLOEXEC | unix.FAN_NONBLOCK |
		unix.FAN_REPORT_DFID_NAME_TARGET // = DFID_NAME | FID | TARGET_FID
	fanMarkMask = unix.FAN_CREATE | unix.FAN_DELETE | unix.FAN_MODIFY | unix.FAN_CLOSE_WRITE |
		unix.FAN_ATTRIB | unix.FAN_RENAME | unix.FAN_ONDIR | unix.FAN_EVENT_ON_CHILD
)

// fanBackend reads a fanotify group with a filesystem mark.
type fanBackend struct {
	w       *Watcher
	gfd     int
	mountFD int
	res     *resolver
	procs   *procCache
	list    *lister
}

func newFanotify(w *Watcher, unlimited bool) (*fanBackend, error) {
	flags := uint(fanInitFlags)
	if unlimited {
		flags |= unix.FAN_UNLIMITED_QUEUE
	}
	gfd, err := unix.FanotifyInit(flags, unix.O_RDONLY|unix.O_LARGEFILE|unix.O_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("fanotify_init: %w", err)
	}
	if err := unix.FanotifyMark(gfd, unix.FAN_MARK_ADD|unix.FAN_MARK_FILESYSTEM, fanMarkMask, unix.AT_FDCWD, w.root); err != nil {
		unix.Close(gfd)
		return nil, fmt.Errorf("fanotify_mark %s: %w", w.root, err)
	}
	mfd, err := unix.Open(w.root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		unix.Close(gfd)
		return nil, fmt.Errorf("open %s: %w", w.root, err)
	}
	// open_by_handle_at must work here, or no directory could be resolved.
	fh, _, err := unix.NameToHandleAt(unix.AT_FDCWD, w.root, 0)
	if err == nil {
		var fd int
		if fd, err = unix.OpenByHandleAt(mfd, fh, unix.O_PATH|unix.O_CLOEXEC); err == nil {
			unix.Close(fd)
		}
	}
	if err != nil {
		unix.Close(mfd)
		unix.Close(gfd)
		return nil, fmt.Errorf("open_by_handle_at on %s: %w", w.root, err)
	}
	procs := newProcCache(w.t.fds, &w.c)
	procs.shared, procs.win = w.procs, &w.win
	return &fanBackend{
		w:       w,
		gfd:     gfd,
		mountFD: mfd,
		res:     newResolver(mfd, w.t.fds, w.t, &w.c),
		procs:   procs,
		list:    newLister(mfd, w.t.fds, &w.c),
	}, nil
}

func (f *fanBackend) fd() int { return f.gfd }

func (f *fanBackend) close() {
	unix.Close(f.gfd)
	unix.Close(f.mountFD)
}

func (f *fanBackend) idle(time.Time) time.Duration { f.w.t.idle(); return 0 }

func (f *fanBackend) handle(buf []byte, now time.Time) {
	defer f.w.t.flush()
	defer f.list.done()
	p := parser{buf: buf}
	var ev rawEvent
	for {
		ok, err := p.next(&ev)
		if err != nil {
			f.w.c.parseErrors.Add(1)
			f.w.log.Error("fanotify: dropping the rest of a read buffer", "err", err)
			f.w.t.lose(capture.ReasonParse, 1) // at least one record
			return
		}
		if !ok {
			return
		}
		f.w.c.eventsRead.Add(1)
		f.event(&ev, now)
	}
}

// lost returns the first of a and b that is a loss: an error other than
// the directory having been deleted.
func lost(a, b error) error {
	switch {
	case a != nil && a != errGone:
		return a
	case b != nil && b != errGone:
		return b
	}
	return nil
}

// lose reports a record that could not be resolved though its directory may
// exist: the ops it stood for are lost, and a rescan must find them.
func (f *fanBackend) lose(err error, ev *rawEvent) {
	reason := capture.ReasonOf(err, capture.ReasonResolve)
	if err == errBadRecord {
		reason = capture.ReasonParse
	}
	f.w.t.lose(reason, 1)
	if ev.Mask&maskRename != 0 && ev.Mask&maskOnDir != 0 {
		// The cache may hold the renamed directory, or directories below
		// it, under their old paths: start afresh.
		clear(f.res.cache)
		f.w.c.cacheResets.Add(1)
	}
	if f.w.log.Enabled(context.Background(), slog.LevelDebug) {
		f.w.log.Debug("fanotify: record lost", "reason", reason, "err", err, "mask", fmt.Sprintf("%#x", ev.Mask), "pid", ev.PID)
	}
}

// event handles one parsed record.
func (f *fanBackend) event(ev *rawEvent, now time.Time) {
	if ev.FD >= 0 {
		unix.Close(int(ev.FD)) // not requested with FID reporting; never leak one
	}
	if ev.PIDFD >= 0 {
		unix.Close(int(ev.PIDFD))
	}
	if ev.Bad != nil {
		f.w.c.parseErrors.Add(1)
		f.w.t.lose(capture.ReasonParse, 1)
		return
	}
	t := f.w.t
	if ev.Mask&maskOverflow != 0 {
		t.overflow(ev.Mask)
		return
	}
	dir := ev.Mask&maskOnDir != 0
	if ev.Mask&maskRename != 0 {
		od, err1 := f.res.dir(ev.OldDFID)
		nd, err2 := f.res.dir(ev.NewDFID)
		if err := lost(err1, err2); err != nil {
			f.lose(err, ev)
			return
		}
		ok1, ok2 := err1 == nil, err2 == nil
		if !ok1 && !ok2 {
			f.w.c.unresolved.Add(1)
			return
		}
		var oldPath, newPath string
		oldIn, newIn := false, false
		if ok1 {
			oldPath, oldIn = join(od.path, ev.OldName), od.inside
		}
		if ok2 {
			newPath, newIn = join(nd.path, ev.NewName), nd.inside
		}
		if dir && ok1 && ok2 {
			f.res.renamed(ev.FID, oldPath, newPath)
		}
		if !oldIn && !newIn {
			f.w.c.outside.Add(1)
			return
		}
		t.rename(oldPath, newPath, dir, f.procs.lookup(ev.PID, now), ev.Mask)
		return
	}
	if ev.DFID == nil {
		f.w.c.nameless.Add(1)
		return
	}
	d, err := f.res.dir(ev.DFID)
	if err != nil {
		if dir && ev.Mask&maskDelete != 0 {
			f.res.forget(ev.FID)
		}
		if err != errGone {
			f.lose(err, ev)
			return
		}
		// A record in a directory deleted since (and not learnt).
		f.w.c.unresolved.Add(1)
		if f.w.log.Enabled(context.Background(), slog.LevelDebug) {
			f.w.log.Debug("fanotify: unresolved event", "mask", fmt.Sprintf("%#x", ev.Mask), "dfid", ev.DFID != nil, "name", string(ev.Name), "pid", ev.PID)
		}
		return
	}
	if dir && ev.Mask&maskDelete != 0 {
		f.res.forget(ev.FID)
	}
	if !d.inside {
		f.w.c.outside.Add(1)
		return
	}
	ch := change{
		path:       join(d.path, ev.Name),
		dir:        dir,
		create:     ev.Mask&maskCreate != 0,
		delete:     ev.Mask&maskDelete != 0,
		modify:     ev.Mask&maskModify != 0,
		closeWrite: ev.Mask&maskCloseWrite != 0,
		attrib:     ev.Mask&maskAttrib != 0,
		fid:        ev.FID,
		raw:        ev.Mask,
		own:        f.w.shadows && ev.PID == selfPID,
		absent:     f.list.absent(ev.Mask, ev.DFID, ev.Name),
	}
	if ch.path == t.root && (ch.create || ch.delete) {
		return // Root itself came or went: outside what we report
	}
	if dir && ch.create {
		f.res.learn(ev.FID, ch.path)
	}
	t.apply(&ch, f.procs.lookup(ev.PID, now))
}
