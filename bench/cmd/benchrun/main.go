// Command benchrun measures semprop side by side with the systems its users
// would pick instead (NATS, JetStream, inotifywait, fsnotify, a plain go-fuse
// loopback, cel-go), in one run on one machine, and prints a Markdown table
// of medians and ratios (semprop ÷ peer). See bench/README.md.
//
//	go run ./cmd/benchrun [--quick] [--rows 1,2,...] [--reps N] [--out RESULTS.md]
//
// It must run as root (fanotify, FUSE, tmpfs mounts) on Linux.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cfg is the run's configuration, set from flags.
type cfg struct {
	quick bool
	reps  int
	// fuseReps: repetitions of row 5, whose ratio is decided by a few
	// percent on a machine whose speed moves ±15% between minutes.
	fuseReps int
	rows     []int
	out      string
	tmp      string // scratch directory on the root file system
	repo     string // repository root (for building the semprop binary)
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func main() {
	if len(os.Args) > 1 && os.Args[1] == "storm" {
		stormChild(os.Args[2:])
		return
	}
	var c cfg
	var rowsFlag string
	flag.BoolVar(&c.quick, "quick", false, "small counts: the whole run finishes in under 2 minutes (spot checks)")
	flag.IntVar(&c.reps, "reps", 0, "repetitions of each measurement (default 3 quick, 5 full); medians are reported")
	flag.IntVar(&c.fuseReps, "fuse-reps", 0, "repetitions of row 5, the FUSE copy (default 3 × --reps)")
	flag.StringVar(&rowsFlag, "rows", "1,2,3,4,5,6,7", "comma-separated rows to run (see README.md)")
	flag.StringVar(&c.out, "out", "", "write the results (Markdown) to this file (default RESULTS.md for a full run of every row, none for --quick)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file (where to push)")
	flag.Parse()
	if c.reps <= 0 {
		c.reps = 5
		if c.quick {
			c.reps = 3
		}
	}
	if c.fuseReps <= 0 {
		c.fuseReps = 3 * c.reps
	}
	for _, r := range strings.Split(rowsFlag, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(r))
		if err != nil || n < 1 || n > 7 {
			fatalf("--rows: %q: want numbers 1-7", r)
		}
		c.rows = append(c.rows, n)
	}
	if c.quick {
		benchTime = 100 * time.Millisecond
	}
	if c.out == "" && !c.quick && len(c.rows) == 7 {
		c.out = "RESULTS.md"
	}
	if os.Geteuid() != 0 {
		fatalf("benchrun needs root (fanotify, FUSE, tmpfs mounts)")
	}
	wd, _ := os.Getwd()
	c.repo = strings.TrimSuffix(wd, "/bench")
	if _, err := os.Stat(c.repo + "/cmd/semprop"); err != nil {
		fatalf("run from bench/ (got %s): %v", wd, err)
	}
	var err error
	if c.tmp, err = os.MkdirTemp("/var/tmp", "semprop-bench-"); err != nil {
		fatalf("%v", err)
	}
	defer os.RemoveAll(c.tmp)

	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fatalf("%v", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fatalf("%v", err)
		}
		defer pprof.StopCPUProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep := &report{
		cmd: "cd bench && ./run " + strings.Join(os.Args[1:], " "), start: time.Now(), loadBefore: loadavg(),
		quick: c.quick, reps: c.reps, fuseReps: c.fuseReps, commit: gitState(c.repo),
	}
	runners := map[int]func(context.Context, *cfg, *report) error{
		1: rowInProcess, 2: rowNetwork, 3: rowReplicated, 4: rowCapture, 5: rowFUSE, 6: rowFilters, 7: rowDurability,
	}
	for _, r := range c.rows {
		if ctx.Err() != nil {
			break
		}
		fmt.Fprintf(os.Stderr, "== row %d: %s\n", r, rowTitles[r])
		if !c.quick {
			waited, idle := settle(time.Minute)
			rep.note(r, settleNote(waited, idle))
		}
		t0 := time.Now()
		if err := runners[r](ctx, &c, rep); err != nil {
			fmt.Fprintf(os.Stderr, "row %d failed: %v\n", r, err)
			rep.note(r, fmt.Sprintf("**row failed:** %v", err))
		}
		fmt.Fprintf(os.Stderr, "   row %d took %v\n", r, time.Since(t0).Round(time.Second))
	}
	rep.end, rep.loadAfter = time.Now(), loadavg()
	md := rep.markdown()
	fmt.Print(md)
	if c.out != "" {
		if err := os.WriteFile(c.out, []byte(md), 0o644); err != nil {
			fatalf("%v", err)
		}
		fmt.Fprintf(os.Stderr, "wrote %s\n", c.out)
	}
}

var rowTitles = map[int]string{
	1: "in-process pub/sub",
	2: "network (loopback)",
	3: "replicated, acknowledged (3 nodes)",
	4: "kernel capture storm",
	5: "FUSE copy of $GOROOT/src",
	6: "filters",
	7: "durability (fsync always, 64 publishers)",
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "benchrun: "+format+"\n", args...)
	os.Exit(1)
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// machine describes the machine: cores, CPU model, kernel.
func machine() string {
	model := "?"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	var u syscall.Utsname
	kernel := "?"
	if syscall.Uname(&u) == nil {
		kernel = cstr(u.Sysname[:]) + " " + cstr(u.Release[:]) + " " + cstr(u.Machine[:])
	}
	return fmt.Sprintf("%d cores (GOMAXPROCS %d), %s, kernel %s, %s", runtime.NumCPU(), runtime.GOMAXPROCS(0), model, kernel, runtime.Version())
}

func cstr(b []int8) string {
	var s []byte
	for _, c := range b {
		if c == 0 {
			break
		}
		s = append(s, byte(c))
	}
	return string(s)
}

// cpuSelf is the user+sys CPU time of this process so far.
func cpuSelf() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuPID is the user+sys CPU time of process pid so far, from /proc.
func cpuPID(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		s = s[i+2:]
	}
	f := strings.Fields(s) // f[0] is field 3 (state); utime is field 14, stime 15
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	const hz = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / hz
}

// median of xs (NaN-free); 0 if empty.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// pct returns the p-th percentile (0-100) of sorted ds.
func pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	i := int(float64(len(ds)) * p / 100)
	if i >= len(ds) {
		i = len(ds) - 1
	}
	return ds[i]
}

func us(d time.Duration) float64 { return float64(d) / 1e3 }

// gitState names the commit measured and whether the work tree differs from
// it (bench/ resolves semprop through a replace of the work tree).
func gitState(repo string) string {
	out, err := exec.Command("git", "-C", repo, "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return ""
	}
	s := "commit " + strings.TrimSpace(string(out))
	st, err := exec.Command("git", "-C", repo, "status", "--porcelain", "--untracked-files=no", "--", ".", ":!bench").Output()
	if err == nil {
		if t := strings.TrimSpace(string(st)); t != "" {
			n := strings.Count(t, "\n") + 1
			s += fmt.Sprintf(" plus uncommitted changes to %d tracked files outside bench/ (the work tree is what was built)", n)
		} else {
			s += " (clean work tree)"
		}
	}
	return s
}
