package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/semprop/semprop/internal/capture"
	"github.com/semprop/semprop/internal/capture/fanotify"
)

// stormChild runs in a child process (benchrun storm DIR CYCLES): cycles of
// create / write 64 bytes / close / unlink, and prints its wall time in ns.
func stormChild(args []string) {
	if len(args) != 2 {
		fatalf("usage: benchrun storm DIR CYCLES")
	}
	cycles, err := strconv.Atoi(args[1])
	if err != nil {
		fatalf("%v", err)
	}
	data := make([]byte, 64)
	start := time.Now()
	for i := range cycles {
		p := args[0] + "/f" + strconv.Itoa(i)
		fd, err := syscall.Open(p, syscall.O_CREAT|syscall.O_WRONLY|syscall.O_CLOEXEC, 0o644)
		if err != nil {
			fatalf("%v", err)
		}
		if _, err := syscall.Write(fd, data); err != nil {
			fatalf("%v", err)
		}
		syscall.Close(fd)
		if err := syscall.Unlink(p); err != nil {
			fatalf("%v", err)
		}
	}
	fmt.Println(time.Since(start).Nanoseconds())
}

// storm runs the storm in a child process and returns its wall time.
func storm(ctx context.Context, dir string, cycles int) (time.Duration, error) {
	self, err := os.Executable()
	if err != nil {
		return 0, err
	}
	out, err := exec.CommandContext(ctx, self, "storm", dir, strconv.Itoa(cycles)).Output()
	if err != nil {
		return 0, fmt.Errorf("storm: %w", err)
	}
	ns, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	return time.Duration(ns), err
}

// watcher is one capture system under test.
type watcher interface {
	count() int64       // create+write+delete events captured so far
	cpu() time.Duration // CPU used by the watcher so far
	stop() string       // stops it; returns a remark (overflows, mode)
}

type sempropWatcher struct {
	w      *fanotify.Watcher
	n      atomic.Int64
	cancel context.CancelFunc
	done   chan error
}

func (s *sempropWatcher) Emit(op *capture.Op) {
	switch op.Kind {
	case capture.KindCreate, capture.KindWrite, capture.KindDelete:
		s.n.Add(1)
	}
}

func startSempropWatcher(dir string) (*sempropWatcher, error) {
	s := &sempropWatcher{done: make(chan error, 1)}
	w, err := fanotify.New(fanotify.Options{Root: dir, Sink: s, Logger: quiet})
	if err != nil {
		return nil, err
	}
	if w.Mode() != "fanotify" {
		w.Close()
		return nil, fmt.Errorf("semprop watcher fell back to %s", w.Mode())
	}
	s.w = w
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go func() { s.done <- w.Run(ctx) }()
	return s, nil
}

func (s *sempropWatcher) count() int64       { return s.n.Load() }
func (s *sempropWatcher) cpu() time.Duration { return cpuSelf() }
func (s *sempropWatcher) stop() string {
	st := s.w.Stats()
	s.cancel()
	<-s.done
	s.w.Close()
	return fmt.Sprintf("overflows %d, rescans %d", st.Overflows, st.Rescans)
}

type fsnotifyWatcher struct {
	w         *fsnotify.Watcher
	n         atomic.Int64
	overflows atomic.Int64
	done      chan struct{}
}

func startFsnotify(dir string) (*fsnotifyWatcher, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	if err := w.Add(dir); err != nil {
		w.Close()
		return nil, err
	}
	f := &fsnotifyWatcher{w: w, done: make(chan struct{})}
	go func() {
		defer close(f.done)
		evs, errs := w.Events, w.Errors
		for evs != nil || errs != nil {
			select {
			case ev, ok := <-evs:
				if !ok {
					evs = nil
					continue
				}
				if ev.Has(fsnotify.Create) || ev.Has(fsnotify.Write) || ev.Has(fsnotify.Remove) {
					f.n.Add(1)
				}
			case err, ok := <-errs:
				if !ok {
					errs = nil
					continue
				}
				if errors.Is(err, fsnotify.ErrEventOverflow) {
					f.overflows.Add(1)
				}
			}
		}
	}()
	return f, nil
}

func (f *fsnotifyWatcher) count() int64       { return f.n.Load() }
func (f *fsnotifyWatcher) cpu() time.Duration { return cpuSelf() }
func (f *fsnotifyWatcher) stop() string {
	f.w.Close()
	<-f.done
	return fmt.Sprintf("overflows %d", f.overflows.Load())
}

type inotifywait struct {
	cmd       *exec.Cmd
	n         atomic.Int64
	overflows atomic.Int64
	done      chan struct{}
}

func startInotifywait(ctx context.Context, dir string) (*inotifywait, error) {
	cmd := exec.CommandContext(ctx, "inotifywait", "-m", "-r", "-e", "create", "-e", "close_write", "-e", "delete", "--format", "%e %w%f", dir)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("inotifywait (apt-get install inotify-tools): %w", err)
	}
	iw := &inotifywait{cmd: cmd, done: make(chan struct{})}
	go func() {
		defer close(iw.done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			l := sc.Bytes()
			switch {
			case bytes.HasPrefix(l, []byte("CREATE")), bytes.HasPrefix(l, []byte("CLOSE_WRITE")), bytes.HasPrefix(l, []byte("DELETE")):
				iw.n.Add(1)
			case bytes.HasPrefix(l, []byte("Q_OVERFLOW")):
				iw.overflows.Add(1)
			}
		}
	}()
	// Wait for "Watches established." on stderr.
	ready := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "Watches established") {
				ready <- nil
				break
			}
		}
		ready <- errors.New("inotifywait did not establish its watches")
		for sc.Scan() {
		}
	}()
	select {
	case err := <-ready:
		if err != nil {
			iw.stop()
			return nil, err
		}
	case <-time.After(10 * time.Second):
		iw.stop()
		return nil, errors.New("inotifywait: no watches after 10s")
	}
	return iw, nil
}

func (iw *inotifywait) count() int64       { return iw.n.Load() }
func (iw *inotifywait) cpu() time.Duration { return cpuPID(iw.cmd.Process.Pid) }
func (iw *inotifywait) stop() string {
	_ = iw.cmd.Process.Signal(syscall.SIGTERM)
	<-iw.done
	_ = iw.cmd.Wait()
	return fmt.Sprintf("overflows %d", iw.overflows.Load())
}

// captureOnce runs the storm under w and returns events captured, CPU
// seconds of the watcher from the storm's start until it went quiet, and
// the storm's wall time.
func captureOnce(ctx context.Context, w watcher, dir string, cycles int) (captured int64, cpu, wall time.Duration, err error) {
	want := int64(3 * cycles)
	cpu0 := w.cpu()
	wall, err = storm(ctx, dir, cycles)
	if err != nil {
		return 0, 0, 0, err
	}
	// Wait until everything arrived, or nothing new for 1s (lost events),
	// at most 60s.
	last, lastChange := w.count(), time.Now()
	deadline := time.Now().Add(60 * time.Second)
	for w.count() < want && time.Since(lastChange) < time.Second && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
		if n := w.count(); n != last {
			last, lastChange = n, time.Now()
		}
	}
	cpu = w.cpu() - cpu0
	return w.count(), cpu, wall, nil
}

func mountTmpfs(dir string) (func(), error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if err := syscall.Mount("semprop-bench", dir, "tmpfs", 0, "size=1g,nr_inodes=400k"); err != nil {
		return nil, fmt.Errorf("mount tmpfs at %s: %w", dir, err)
	}
	return func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			syscall.Unmount(dir, syscall.MNT_DETACH)
		}
	}, nil
}

func rowCapture(ctx context.Context, c *cfg, rep *report) error {
	cycles := 100_000
	if c.quick {
		cycles = 10_000
	}
	root := filepath.Join(c.tmp, "storm-fs")
	umount, err := mountTmpfs(root)
	if err != nil {
		return err
	}
	defer umount()
	rep.note(4, fmt.Sprintf("storm: a child process runs %d cycles of create / write 64 bytes / close / unlink in one directory of a private tmpfs (so other processes' file activity is not seen by fanotify's filesystem mark); expected = 3 events per cycle (create, write, delete). Storm time is measured in the child; \"watched ÷ unwatched\" divides by the same storm with no watcher, run in the same repetition.", cycles))
	rep.note(4, "semprop = internal/capture/fanotify watcher (fanotify filesystem mark with FID reporting, directory handles resolved to paths, process context from /proc), in this process, counting create/write/delete ops; kernel queue bounded (16,384), overflow handled by a rescan. fsnotify v1.10.1 = one inotify watch on the directory (not recursive; the storm is flat), counting Create/Write/Remove, in this process. inotifywait = Debian inotify-tools `inotifywait -m -r -e create -e close_write -e delete --format '%e %w%f'` as a child process, its stdout read and counted by this process (the counting is not in its CPU figure).")
	rep.note(4, "CPU seconds: for the in-process watchers, this process's user+sys time (getrusage) from the storm's start until the watcher went quiet (nothing else runs in it then); for inotifywait, its user+sys from /proc/PID/stat. inotify and fsnotify report less per event than semprop (no pid/uid/comm, fsnotify no close-write).")
	type side struct {
		name               string
		start              func() (watcher, error)
		got, cpu, slowdown []float64
		remarks            []string
	}
	sides := []*side{
		{name: "semprop fanotify", start: func() (watcher, error) { return startSempropWatcher(root) }},
		{name: "inotifywait -m -r", start: func() (watcher, error) { return startInotifywait(ctx, root) }},
		{name: "fsnotify", start: func() (watcher, error) { return startFsnotify(root) }},
	}
	for r := range c.reps {
		for i := range sides {
			sd := sides[i]
			if r%2 == 1 {
				sd = sides[len(sides)-1-i]
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			base, err := storm(ctx, root, cycles)
			if err != nil {
				return err
			}
			w, err := sd.start()
			if err != nil {
				return fmt.Errorf("%s: %w", sd.name, err)
			}
			got, cpu, wall, err := captureOnce(ctx, w, root, cycles)
			remark := w.stop()
			if err != nil {
				return fmt.Errorf("%s: %w", sd.name, err)
			}
			sd.got = append(sd.got, 100*float64(got)/float64(3*cycles))
			sd.cpu = append(sd.cpu, cpu.Seconds())
			sd.slowdown = append(sd.slowdown, wall.Seconds()/base.Seconds())
			sd.remarks = append(sd.remarks, fmt.Sprintf("%d/%d, %s", got, 3*cycles, remark))
		}
	}
	s := sides[0]
	for _, p := range sides[1:] {
		rep.add(&line{row: 4, name: "events captured of expected", unit: "%", better: higher, semprop: s.name, peer: p.name, s: s.got, p: p.got})
		rep.add(&line{row: 4, name: "watcher CPU seconds", unit: "s", better: lower, semprop: s.name, peer: p.name, s: s.cpu, p: p.cpu})
		rep.add(&line{row: 4, name: "storm time, watched ÷ unwatched", unit: "×", better: lower, semprop: s.name, peer: p.name, s: s.slowdown, p: p.slowdown})
	}
	for _, sd := range sides {
		rep.note(4, fmt.Sprintf("%s, captured/expected per repetition: %s", sd.name, dedup(sd.remarks)))
	}
	return nil
}

// dedup joins remarks, folding identical ones into "x (×n)".
func dedup(rs []string) string {
	var out []string
	for i := 0; i < len(rs); {
		j := i
		for j < len(rs) && rs[j] == rs[i] {
			j++
		}
		if j-i > 1 {
			out = append(out, fmt.Sprintf("%s (×%d)", rs[i], j-i))
		} else {
			out = append(out, rs[i])
		}
		i = j
	}
	return strings.Join(out, "; ")
}
