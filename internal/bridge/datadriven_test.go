package bridge

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/capture"
)

var update = flag.Bool("update", false, "rewrite the expected output in testdata")

// TestCorrelate runs every testdata/correlate/*.txt case: a timed sequence
// of ops from both boundaries above a "----" line, the published events and
// invalidation calls (with the time they happened) and the counters below.
// Run with -update to rewrite the expected part, then review the diff.
func TestCorrelate(t *testing.T) {
	files, err := filepath.Glob("testdata/correlate/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no test cases: %v", err)
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txt"), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			input, want, _ := strings.Cut(string(data), "----\n")
			got := runCase(t, input)
			if *update {
				if err := os.WriteFile(file, []byte(input+"----\n"+got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("%s: output mismatch (-want +got):\n%s", file, diff)
			}
		})
	}
}

// runCase drives a correlator the way Run does — the timer fires before an
// op taken at time t, and expiry runs after it — with an injected clock.
func runCase(t *testing.T, input string) string {
	t.Helper()
	var out strings.Builder
	base := time.Unix(1_800_000_000, 0).UTC()
	var now time.Time
	var st counters
	cfg := config{window: 50 * time.Millisecond, maxWindow: 500 * time.Millisecond, selfPID: 100, backing: "/b", mount: "/m",
		srcKernel: "semprop://test/kernel", srcFUSE: "semprop://test/fuse"}
	hold, inval := true, true
	var c *correlator
	build := func() {
		cfg.bridged = cfg.mount != ""
		cfg.holdWrites = cfg.bridged && hold
		cfg.invalidate = cfg.bridged && inval
		c = newCorrelator(cfg, &st, 64,
			func(ev *event.Event) { fmt.Fprintf(&out, "@%s %s\n", ms(now.Sub(base)), formatEvent(ev)) },
			func(k InvalKind, rel string) {
				dir, name := splitRel(rel)
				if k == InvalContent {
					fmt.Fprintf(&out, "@%s inval content %q\n", ms(now.Sub(base)), rel)
				} else {
					fmt.Fprintf(&out, "@%s inval %s %q %q\n", ms(now.Sub(base)), k, dir, name)
				}
			})
	}
	// advance fires the timer at every deadline up to t, as Run does.
	advance := func(t time.Time) {
		for {
			d, ok := c.nextDeadline()
			if !ok || d.After(t) {
				break
			}
			now = d
			c.expire(d)
		}
		now = t
		c.expire(t)
	}
	last := time.Duration(0)
	for n, line := range strings.Split(input, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		fields := strings.Fields(line)
		if fields[0] == "options" {
			for _, f := range fields[1:] {
				k, v, _ := strings.Cut(f, "=")
				switch k {
				case "kernelonly":
					cfg.backing, cfg.mount = "", ""
				case "nopassthrough":
					hold = false
				case "noinval":
					inval = false
				case "orphans":
					cfg.publishOrphan = true
				case "window":
					d, err := time.ParseDuration(v)
					if err != nil {
						t.Fatalf("line %d: %v", n+1, err)
					}
					cfg.window = d
				default:
					t.Fatalf("line %d: unknown option %q", n+1, f)
				}
			}
			continue
		}
		if c == nil {
			build()
		}
		at, err := time.ParseDuration(strings.TrimPrefix(fields[0], "@"))
		if err != nil || at < last {
			t.Fatalf("line %d: bad or decreasing time %q", n+1, fields[0])
		}
		last = at
		advance(base.Add(at))
		if fields[1] == "tick" {
			continue
		}
		op, err := parseOp(fields[1:])
		if err != nil {
			t.Fatalf("line %d: %v", n+1, err)
		}
		op.Time = now
		c.add(op, now)
		c.expire(now)
	}
	if c == nil {
		build()
	}
	advance(base.Add(last + 10*cfg.window))
	if c.pending != 0 || len(c.order) != 0 || len(c.pathQ) != 0 {
		t.Errorf("after all windows: pending %d, order %d, paths %d, want 0", c.pending, len(c.order), len(c.pathQ))
	}
	fmt.Fprintf(&out, "stats %s\n", formatStats(&st))
	if c.win != cfg.window {
		fmt.Fprintf(&out, "window %s\n", c.win)
	}
	return out.String()
}

func ms(d time.Duration) string { return strconv.FormatFloat(float64(d)/1e6, 'f', -1, 64) + "ms" }

var kindNames = map[string]capture.Kind{
	"raw": capture.KindNone, "create": capture.KindCreate, "write": capture.KindWrite,
	"attrib": capture.KindAttrib, "rename": capture.KindRename, "delete": capture.KindDelete,
	"mkdir": capture.KindMkdir, "rmdir": capture.KindRmdir, "link": capture.KindLink,
	"symlink": capture.KindSymlink, "overflow": capture.KindOverflow, "rescan": capture.KindRescan,
}

// parseOp parses "BOUNDARY KIND PATH key=value...".
func parseOp(f []string) (*capture.Op, error) {
	if len(f) < 3 {
		return nil, fmt.Errorf("want BOUNDARY KIND PATH [k=v...], got %q", f)
	}
	op := &capture.Op{Path: f[2]}
	switch f[0] {
	case "kernel":
		op.Boundary = event.BoundaryKernel
	case "fuse":
		op.Boundary = event.BoundaryFUSE
	default:
		return nil, fmt.Errorf("unknown boundary %q", f[0])
	}
	k, ok := kindNames[f[1]]
	if !ok {
		return nil, fmt.Errorf("unknown kind %q", f[1])
	}
	op.Kind = k
	for _, kv := range f[3:] {
		key, v, _ := strings.Cut(kv, "=")
		num := func(base int) int64 {
			n, err := strconv.ParseInt(v, base, 64)
			if err != nil {
				panic(fmt.Sprintf("%s: %v", kv, err))
			}
			return n
		}
		switch key {
		case "pid":
			op.PID, op.Known = int32(num(10)), op.Known|event.HasPID
		case "tid":
			op.TID, op.Known = int32(num(10)), op.Known|event.HasTID
		case "uid":
			op.UID, op.Known = uint32(num(10)), op.Known|event.HasUID
		case "gid":
			op.GID, op.Known = uint32(num(10)), op.Known|event.HasGID
		case "ino":
			op.Inode, op.Known = uint64(num(10)), op.Known|event.HasInode
		case "size":
			op.Size, op.Known = num(10), op.Known|event.HasSize
		case "bytes":
			op.Bytes, op.Known = num(10), op.Known|event.HasBytes
		case "off":
			op.Offset, op.Known = num(10), op.Known|event.HasOffset
		case "len":
			op.Length, op.Known = num(10), op.Known|event.HasLength
		case "mode":
			op.Mode, op.Known = uint32(num(8)), op.Known|event.HasMode
		case "comm":
			op.Comm = v
		case "exe":
			op.Exe = v
		case "old":
			op.OldPath = v
		case "target":
			op.Target = v
		case "dir":
			op.IsDir = true
		case "rescan":
			op.Rescan = true
		case "count":
			op.Count = num(10)
		case "raw":
			op.Raw = uint64(num(0))
		default:
			return nil, fmt.Errorf("unknown field %q", kv)
		}
	}
	return op, nil
}

// formatEvent prints the fields of ev that the bridge decides.
func formatEvent(ev *event.Event) string {
	var b strings.Builder
	src := ev.Source[strings.LastIndexByte(ev.Source, '/')+1:]
	fmt.Fprintf(&b, "%s %s", ev.Type, ev.Subject)
	c := &ev.Context
	if c.OldPath != "" {
		fmt.Fprintf(&b, " old=%s", c.OldPath)
	}
	if c.Target != "" {
		fmt.Fprintf(&b, " target=%s", c.Target)
	}
	fmt.Fprintf(&b, " src=%s boundary=%s boundaries=%s", src, ev.Boundary, ev.Boundaries)
	if c.Has(event.HasPID) {
		fmt.Fprintf(&b, " pid=%d", c.PID)
	}
	if c.Has(event.HasTID) {
		fmt.Fprintf(&b, " tid=%d", c.TID)
	}
	if c.Has(event.HasUID) {
		fmt.Fprintf(&b, " uid=%d", c.UID)
	}
	if c.Has(event.HasGID) {
		fmt.Fprintf(&b, " gid=%d", c.GID)
	}
	if c.Comm != "" {
		fmt.Fprintf(&b, " comm=%s", c.Comm)
	}
	if c.Has(event.HasInode) {
		fmt.Fprintf(&b, " ino=%d", c.Inode)
	}
	if c.Has(event.HasSize) {
		fmt.Fprintf(&b, " size=%d", c.Size)
	}
	if c.Has(event.HasBytes) {
		fmt.Fprintf(&b, " bytes=%d", c.Bytes)
	}
	if c.Has(event.HasOffset | event.HasLength) {
		fmt.Fprintf(&b, " range=%d+%d", c.Offset, c.Length)
	}
	if c.Has(event.HasMode) {
		fmt.Fprintf(&b, " mode=%o", c.Mode)
	}
	if ev.Flags&event.FlagRescan != 0 {
		b.WriteString(" rescan")
	}
	for _, a := range ev.Attrs {
		fmt.Fprintf(&b, " %s=%s", a.Key, a.Value)
	}
	return b.String()
}

func formatStats(st *counters) string {
	var b strings.Builder
	for _, f := range []struct {
		name string
		v    uint64
	}{
		{"kernel", st.seenKernel.Load()}, {"fuse", st.seenFUSE.Load()},
		{"shadows", st.shadows.Load()}, {"merged", st.merged.Load()},
		{"absorbed", st.absorbed.Load()}, {"late", st.late.Load()}, {"stallwaits", st.stallWaits.Load()}, {"latefuse", st.lateFUSE.Load()}, {"orphans", st.orphans.Load()},
		{"passthrough", st.passthroughMerged.Load()}, {"coalesced", st.coalesced.Load()}, {"fuseonly", st.fuseOnly.Load()},
		{"kernelonly", st.kernelOnly.Load()},
		{"dedup", st.dedupHits.Load()}, {"rescancovered", st.rescanCovered.Load()},
	} {
		if f.v != 0 {
			fmt.Fprintf(&b, " %s=%d", f.name, f.v)
		}
	}
	return strings.TrimSpace(b.String())
}
