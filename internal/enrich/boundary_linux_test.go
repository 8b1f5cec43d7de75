package enrich

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/bridge"
	"github.com/semprop/semprop/internal/capture/fanotify"
	"github.com/semprop/semprop/internal/capture/fusefs"
)

// TestReadsMakeNoEvents: on a watched tree, a write is published once,
// with its facts, and the Publisher's own read of the file makes no event.
func TestReadsMakeNoEvents(t *testing.T) {
	root := t.TempDir()
	rec := &recorder{}
	p := newTestPublisher(t, Options{Next: rec, Root: root})
	watchTree(t, root, p)
	f := filepath.Join(root, "doc.txt")
	writeFile(t, f, "some text\n")
	rec.waitFor(t, 10*time.Second, func(ev *event.Event) bool { return ev.Type == event.TypeWrite && ev.Subject == f })
	time.Sleep(300 * time.Millisecond) // an event of the read would come now
	var got []string
	evs := rec.take()
	for _, ev := range evs {
		got = append(got, ev.Type+" "+strings.TrimPrefix(ev.Subject, root))
	}
	// The create has facts only if the content was there when it was read
	// (they may come in one batch); the write always has them.
	if want := "fs.create /doc.txt,fs.write /doc.txt"; strings.Join(got, ",") != want {
		t.Errorf("events = %q, want %q (no event of the publisher's own read)", got, want)
	} else if m := attr(evs[1], AttrMime); m != "text/plain" {
		t.Errorf("fs.write mime = %q, want text/plain", m)
	}
}

// TestMountBoundary writes through a FUSE mount of a backing tree, with and
// without passthrough: the events carry the facts, read from the backing
// tree, and a rewrite of the same bytes says changed=false.
func TestMountBoundary(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: fanotify filesystem marks and a FUSE mount")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("needs /dev/fuse: %v", err)
	}
	for _, passthrough := range []bool{false, true} {
		t.Run(map[bool]string{false: "nopassthrough", true: "passthrough"}[passthrough], func(t *testing.T) {
			backing, mnt := t.TempDir(), t.TempDir()
			rec := &recorder{}
			var reads []string
			readCh := make(chan string, 100)
			p := newTestPublisher(t, Options{Next: rec, Root: mnt, Backing: backing, readHook: func(p string) { readCh <- p }})
			mountTree(t, p, backing, mnt, passthrough)

			f := filepath.Join(mnt, "data.bin")
			for range 2 {
				if err := os.WriteFile(f, []byte("same bytes\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				time.Sleep(200 * time.Millisecond)
			}
			ev := rec.waitFor(t, 10*time.Second, func(ev *event.Event) bool {
				return ev.Type == event.TypeWrite && attr(ev, AttrChanged) != ""
			})
			if ev.Subject != f || attr(ev, AttrChanged) != "false" || attr(ev, AttrMime) != "text/plain" {
				t.Errorf("second write: %s %s changed=%q mime=%q", ev.Type, ev.Subject, attr(ev, AttrChanged), attr(ev, AttrMime))
			}
			close(readCh)
			for r := range readCh {
				reads = append(reads, r)
			}
			for _, r := range reads {
				if !strings.HasPrefix(r, backing+"/") {
					t.Errorf("read %s, not in the backing tree", r)
				}
			}
			for _, ev := range rec.take() {
				if v := attr(ev, AttrEnrich); v != "" && v != flagCoalesced {
					t.Errorf("%s %s: enrich=%s", ev.Type, ev.Subject, v)
				}
			}
		})
	}
}

// mountTree runs a bridged tree: the FUSE mount of backing at mnt and the
// kernel boundary on backing, publishing through p.
func mountTree(t *testing.T, p *Publisher, backing, mnt string, passthrough bool) {
	t.Helper()
	b, err := bridge.New(bridge.Options{Publisher: p, Source: "semprop://test", Backing: backing, Mount: mnt,
		SelfPID: int32(os.Getpid()), NoPassthrough: !passthrough, PublishDelay: -1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	bdone := make(chan error, 1)
	go func() { bdone <- b.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-bdone:
		case <-time.After(10 * time.Second):
			t.Error("bridge Run did not return")
		}
	})
	fs, err := fusefs.Mount(fusefs.Options{Backing: backing, Mountpoint: mnt, Sink: b.FUSE(), Passthrough: passthrough,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("mount: %v", err)
	}
	t.Cleanup(func() {
		done := make(chan error, 1)
		go func() { done <- fs.Unmount() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("unmount: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Errorf("unmount hung; detaching %s", mnt)
			_ = unix.Unmount(mnt, unix.MNT_DETACH)
		}
	})
	if passthrough && !fs.Passthrough() {
		t.Skip("FUSE passthrough is not available on this kernel")
	}
	b.SetInvalidator(fs)
	w, err := fanotify.New(fanotify.Options{Root: backing, Sink: b.Kernel(), Shadows: true})
	if err != nil {
		t.Fatalf("fanotify: %v", err)
	}
	wctx, wcancel := context.WithCancel(context.Background())
	wdone := make(chan error, 1)
	go func() { wdone <- w.Run(wctx) }()
	t.Cleanup(func() {
		wcancel()
		select {
		case <-wdone:
		case <-time.After(10 * time.Second):
			t.Error("watcher Run did not return")
		}
		_ = w.Close()
	})
	time.Sleep(50 * time.Millisecond)
}
