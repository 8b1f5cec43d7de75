// Command loopback mounts a plain go-fuse v2 loopback of a backing
// directory with the mount options semprop uses, until SIGINT/SIGTERM: the
// baseline for measuring `semprop run --mount` by hand (bench row 5 does the
// same in-process).
//
//	loopback [--passthrough=true] [--cpuprofile FILE] BACKING MOUNTPOINT
//
// --cpuprofile writes a CPU profile of the whole time mounted, to compare
// the FUSE server's own cost with semprop's (/debug/pprof/profile).
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"

	"github.com/semprop/semprop/internal/capture/fusefs"
)

func main() {
	passthrough := flag.Bool("passthrough", true, "offer FUSE passthrough (as semprop's --fuse-passthrough on)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the time mounted to this file")
	flag.Parse()
	if flag.NArg() != 2 {
		fmt.Fprintln(os.Stderr, "usage: loopback [--passthrough=true|false] [--cpuprofile FILE] BACKING MOUNTPOINT")
		os.Exit(2)
	}
	root, err := fs.NewLoopbackRoot(flag.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, "loopback:", err)
		os.Exit(1)
	}
	et, at, neg := fusefs.DefaultEntryTimeout, fusefs.DefaultAttrTimeout, time.Duration(0)
	server, err := fs.Mount(flag.Arg(1), root, &fs.Options{MountOptions: fusefs.MountOptions(*passthrough, false, nil),
		EntryTimeout: &et, AttrTimeout: &at, NegativeTimeout: &neg})
	if err != nil {
		fmt.Fprintln(os.Stderr, "loopback: mount:", err)
		os.Exit(1)
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "loopback: cpuprofile:", err)
			os.Exit(1)
		}
		defer func() {
			pprof.StopCPUProfile()
			f.Close()
		}()
	}
	fmt.Println("mounted")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	if err := server.Unmount(); err != nil {
		fmt.Fprintln(os.Stderr, "loopback: unmount:", err)
		os.Exit(1) // the profile is lost with it
	}
}
