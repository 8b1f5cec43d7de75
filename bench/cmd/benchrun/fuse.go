package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/semprop/semprop/client"
	"github.com/semprop/semprop/internal/capture/fusefs"
)

// cpCopy copies src into dst with `cp -r` and returns its wall time and
// its own CPU time.
func cpCopy(ctx context.Context, src, dst string) (wall, cpu time.Duration, err error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "cp", "-r", src, dst)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	wall = time.Since(start)
	if err != nil {
		return 0, 0, fmt.Errorf("cp -r %s %s: %w: %s", src, dst, err, out)
	}
	return wall, cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(), nil
}

// plainLoopback mounts a plain go-fuse loopback of backing at mnt in this
// process, with the mount options semprop uses. ok reports whether the
// kernel accepts passthrough backing files on it (probed as semprop does).
func plainLoopback(backing, mnt string, passthrough bool) (unmount func() error, ok bool, err error) {
	root, err := fs.NewLoopbackRoot(backing)
	if err != nil {
		return nil, false, err
	}
	et, at, neg := fusefs.DefaultEntryTimeout, fusefs.DefaultAttrTimeout, time.Duration(0)
	server, err := fs.Mount(mnt, root, &fs.Options{MountOptions: fusefs.MountOptions(passthrough, false, nil),
		EntryTimeout: &et, AttrTimeout: &at, NegativeTimeout: &neg})
	if err != nil {
		return nil, false, err
	}
	ok = false
	if fd, err := unix.MemfdCreate("bench-passthrough-probe", unix.MFD_CLOEXEC); err == nil {
		if id, errno := server.RegisterBackingFd(&fuse.BackingMap{Fd: int32(fd)}); errno == 0 {
			server.UnregisterBackingFd(id)
			ok = true
		}
		unix.Close(fd)
	}
	return server.Unmount, ok, nil
}

// daemon is a `semprop run --mount` child process.
type daemon struct {
	cmd *exec.Cmd
	c   *client.Client
	mnt string
	log *os.File
}

func startDaemon(ctx context.Context, bin, data, backing, mnt string, passthrough bool) (*daemon, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	pt := "off"
	if passthrough {
		pt = "on"
	}
	logf, err := os.Create(data + ".log")
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "run", "--data", data, "--listen", addr, "--mount", backing+":"+mnt,
		"--fuse-passthrough", pt, "--fsync", "always", "--log-level", "info")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	d := &daemon{cmd: cmd, c: client.New("http://"+addr, ""), mnt: mnt, log: logf}
	err = waitFor(ctx, 30*time.Second, func() bool {
		st, err := d.c.Ready(ctx)
		return err == nil && st.Ready
	})
	if err != nil {
		d.stop()
		b, _ := os.ReadFile(logf.Name())
		return nil, fmt.Errorf("semprop run did not become ready: %w: %s", err, b)
	}
	return d, nil
}

// lastSeq waits until the daemon's journal stops growing for 1s (the
// bridge holds events for a correlation window) and returns its last seq.
func (d *daemon) lastSeq(ctx context.Context) uint64 {
	var last uint64
	stable := time.Now()
	deadline := time.Now().Add(30 * time.Second)
	for time.Since(stable) < time.Second && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		st, err := d.c.Ready(ctx)
		if err != nil {
			continue
		}
		if st.LastSeq != last {
			last, stable = st.LastSeq, time.Now()
		}
	}
	return last
}

func (d *daemon) stop() error {
	defer d.log.Close()
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- d.cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(30 * time.Second):
		_ = d.cmd.Process.Kill()
		<-done
		_ = syscall.Unmount(d.mnt, syscall.MNT_DETACH)
		return errors.New("semprop run did not stop within 30s; killed")
	}
}

func buildSemprop(ctx context.Context, c *cfg) (string, error) {
	bin := filepath.Join(c.tmp, "semprop")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/semprop")
	cmd.Dir = c.repo
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/semprop: %w: %s", err, out)
	}
	return bin, nil
}

func countFiles(dir string) int {
	n := 0
	filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
		}
		return nil
	})
	return n
}

func rowFUSE(ctx context.Context, c *cfg, rep *report) error {
	goroot, err := exec.CommandContext(ctx, "go", "env", "GOROOT").Output()
	if err != nil {
		return fmt.Errorf("go env GOROOT: %w", err)
	}
	src := filepath.Join(strings.TrimSpace(string(goroot)), "src")
	if c.quick {
		src = filepath.Join(src, "net")
	}
	bin, err := buildSemprop(ctx, c)
	if err != nil {
		return err
	}
	root := filepath.Join(c.tmp, "fuse-fs")
	umount, err := mountTmpfs(root)
	if err != nil {
		return err
	}
	defer umount()
	files := countFiles(src)
	rep.note(5, fmt.Sprintf("workload: `cp -r %s` (%d files) into: the native directory; a plain go-fuse v2.12.1 loopback (fs.NewLoopbackRoot, mounted in this process); a semprop mount (`semprop run --mount BACKING:MOUNT --fuse-passthrough on|off --fsync always`, a separate daemon process built from ./cmd/semprop: FUSE boundary + fanotify kernel boundary on the backing tree + bridge + journal, every operation published as an event).", src, files))
	rep.note(5, "equal settings: backing trees and the native target on one private tmpfs (disk out of the measurement); both mounts use semprop's fusefs.MountOptions (direct mount, allow_other, default_permissions, no writeback cache, passthrough capability per mode) and 1s entry/attribute timeouts, 0 negative timeout. The semprop daemon's journal is on the root disk (/var/tmp) with fsync=always.")
	rep.note(5, "CPU = user+sys of cp plus of the file-system server: for the plain loopback this process (getrusage), for semprop the daemon (/proc/PID/stat). The semprop daemon's CPU includes journaling and event publishing, which a plain loopback does not do.")
	type side struct{ wall, cpu []float64 }
	native := &side{}
	plain := map[bool]*side{true: {}, false: {}}
	sem := map[bool]*side{true: {}, false: {}}
	events := map[bool][]string{}
	granted := map[bool][]string{}
	plainPT := map[bool][]string{}
	for r := range c.fuseReps {
		type step struct {
			kind        string
			passthrough bool
		}
		steps := []step{{"native", false}, {"plain", true}, {"semprop", true}, {"plain", false}, {"semprop", false}}
		if r%2 == 1 {
			for i, j := 0, len(steps)-1; i < j; i, j = i+1, j-1 {
				steps[i], steps[j] = steps[j], steps[i]
			}
		}
		for _, st := range steps {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			base := filepath.Join(root, fmt.Sprintf("%s-%v-%d", st.kind, st.passthrough, r))
			backing, mnt := base+"-backing", base+"-mnt"
			for _, d := range []string{backing, mnt} {
				if err := os.MkdirAll(d, 0o755); err != nil {
					return err
				}
			}
			switch st.kind {
			case "native":
				wall, cpu, err := cpCopy(ctx, src, filepath.Join(backing, "src"))
				if err != nil {
					return err
				}
				native.wall, native.cpu = append(native.wall, wall.Seconds()), append(native.cpu, cpu.Seconds())
			case "plain":
				unmount, ok, err := plainLoopback(backing, mnt, st.passthrough)
				if err != nil {
					return fmt.Errorf("plain go-fuse mount: %w", err)
				}
				plainPT[st.passthrough] = append(plainPT[st.passthrough], fmt.Sprintf("passthrough=%v", ok))
				self0 := cpuSelf()
				wall, cpu, err := cpCopy(ctx, src, filepath.Join(mnt, "src"))
				cpu += cpuSelf() - self0
				if uerr := unmount(); uerr != nil {
					syscall.Unmount(mnt, syscall.MNT_DETACH)
				}
				if err != nil {
					return err
				}
				s := plain[st.passthrough]
				s.wall, s.cpu = append(s.wall, wall.Seconds()), append(s.cpu, cpu.Seconds())
			case "semprop":
				data := filepath.Join(c.tmp, fmt.Sprintf("fuse-data-%v-%d", st.passthrough, r))
				d, err := startDaemon(ctx, bin, data, backing, mnt, st.passthrough)
				if err != nil {
					return err
				}
				pid := d.cmd.Process.Pid
				cpu0 := cpuPID(pid)
				wall, cpu, err := cpCopy(ctx, src, filepath.Join(mnt, "src"))
				cpu += cpuPID(pid) - cpu0
				var seq uint64
				if err == nil {
					seq = d.lastSeq(ctx)
				}
				if serr := d.stop(); serr != nil && err == nil {
					err = serr
				}
				if err != nil {
					b, _ := os.ReadFile(data + ".log")
					return fmt.Errorf("semprop mount: %w: %s", err, lastLines(string(b), 10))
				}
				if b, err := os.ReadFile(data + ".log"); err == nil {
					granted[st.passthrough] = append(granted[st.passthrough], grantedPassthrough(string(b)))
				}
				os.RemoveAll(data)
				s := sem[st.passthrough]
				s.wall, s.cpu = append(s.wall, wall.Seconds()), append(s.cpu, cpu.Seconds())
				events[st.passthrough] = append(events[st.passthrough], fmt.Sprint(seq))
			}
			os.RemoveAll(backing)
			os.RemoveAll(mnt)
		}
	}
	for _, pt := range []bool{true, false} {
		mode := "passthrough off"
		if pt {
			mode = "passthrough on"
		}
		rep.add(&line{row: 5, name: "copy wall time, " + mode, unit: "s", better: lower, semprop: "semprop mount", peer: "plain go-fuse loopback", s: sem[pt].wall, p: plain[pt].wall, paired: true})
		rep.add(&line{row: 5, name: "copy wall time, " + mode, unit: "s", better: lower, semprop: "semprop mount", peer: "native directory", s: sem[pt].wall, p: native.wall})
		rep.add(&line{row: 5, name: "copy CPU (cp + server), " + mode, unit: "s", better: lower, semprop: "semprop mount", peer: "plain go-fuse loopback", s: sem[pt].cpu, p: plain[pt].cpu, paired: true})
		rep.add(&line{row: 5, name: "copy CPU (cp + server), " + mode, unit: "s", better: lower, semprop: "semprop mount", peer: "native directory", s: sem[pt].cpu, p: native.cpu})
		rep.note(5, fmt.Sprintf("semprop, %s: events journaled per copy: %s (for %d files); passthrough in effect per the daemon's log: %s; plain loopback, backing-file registration probe: %s", mode, dedup(events[pt]), files, dedup(granted[pt]), dedup(plainPT[pt])))
	}
	rep.note(5, "\"mounted once\" lines: the same copy into mounts that stay up for all repetitions, as a daemon serving a mount does: the plain loopback and one semprop daemon per mode are mounted once, each backing tree on a tmpfs of its own (the daemon's fanotify mark covers a whole file system); each repetition copies into both, back to back in alternating order, and removes the copy through the mount, then waits until the daemon's journal is still for 1s. The lines above start a fresh daemon (and mount) for every copy.")
	for _, pt := range []bool{true, false} {
		mode := "passthrough off"
		if pt {
			mode = "passthrough on"
		}
		sw, pw, err := fuseMounted(ctx, c, bin, src, pt)
		if err != nil {
			return fmt.Errorf("mounted once, %s: %w", mode, err)
		}
		rep.add(&line{row: 5, name: "copy wall time, mounted once, " + mode, unit: "s", better: lower, semprop: "semprop mount", peer: "plain go-fuse loopback", s: sw, p: pw, paired: true})
	}
	return nil
}

// fuseMounted copies src c.fuseReps times into a plain loopback and a
// semprop mount that stay mounted throughout, and returns the wall times.
func fuseMounted(ctx context.Context, c *cfg, bin, src string, pt bool) (sem, plain []float64, err error) {
	base := filepath.Join(c.tmp, fmt.Sprintf("fuse-mounted-%v", pt))
	defer os.RemoveAll(base)
	var cleanups []func() // run in reverse: the daemon stops before its backing tmpfs goes
	defer func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}()
	tree := func(name string) (backing, mnt string, err error) {
		backing, mnt = filepath.Join(base, name, "backing"), filepath.Join(base, name, "mnt")
		if err := os.MkdirAll(mnt, 0o755); err != nil {
			return "", "", err
		}
		umount, err := mountTmpfs(backing)
		if err != nil {
			return "", "", err
		}
		cleanups = append(cleanups, umount)
		return backing, mnt, nil
	}
	pb, pm, err := tree("plain")
	if err != nil {
		return nil, nil, err
	}
	sb, sm, err := tree("semprop")
	if err != nil {
		return nil, nil, err
	}
	unmount, _, err := plainLoopback(pb, pm, pt)
	if err != nil {
		return nil, nil, fmt.Errorf("plain go-fuse mount: %w", err)
	}
	cleanups = append(cleanups, func() {
		if unmount() != nil {
			syscall.Unmount(pm, syscall.MNT_DETACH)
		}
	})
	data := filepath.Join(base, "data")
	d, err := startDaemon(ctx, bin, data, sb, sm, pt)
	if err != nil {
		return nil, nil, err
	}
	cleanups = append(cleanups, func() { d.stop() })
	for r := range c.fuseReps {
		order := []string{pm, sm}
		if r%2 == 1 {
			order[0], order[1] = sm, pm
		}
		for _, mnt := range order {
			if ctx.Err() != nil {
				return nil, nil, ctx.Err()
			}
			dst := filepath.Join(mnt, "src")
			wall, _, err := cpCopy(ctx, src, dst)
			if err == nil {
				err = os.RemoveAll(dst)
			}
			if err != nil {
				return nil, nil, err
			}
			if mnt == sm {
				sem = append(sem, wall.Seconds())
				d.lastSeq(ctx)
			} else {
				plain = append(plain, wall.Seconds())
			}
		}
	}
	return sem, plain, nil
}

// grantedPassthrough reads the daemon's "FUSE boundary" log line.
func grantedPassthrough(log string) string {
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "FUSE boundary") {
			if i := strings.Index(l, "passthrough="); i >= 0 {
				return strings.Fields(l[i:])[0]
			}
		}
	}
	return "?"
}

func lastLines(s string, n int) string {
	ls := strings.Split(strings.TrimSpace(s), "\n")
	if len(ls) > n {
		ls = ls[len(ls)-n:]
	}
	return strings.Join(ls, "\n")
}

var _ = net.Listen
