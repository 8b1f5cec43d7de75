package rules

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/semprop/semprop/event"
)

var update = flag.Bool("update", false, "rewrite the want sections of testdata/cases")

// goldenBase is the time that event offsets in test cases count from.
var goldenBase = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// A golden case is a text file of sections, after comment lines (#):
//
//	-- options --        (optional) lateness=2s max_rate=3 feedback=true
//	-- rules.yaml --     a rule file
//	-- events --         one event per line: OFFSET TYPE [SUBJECT] [key=value ...]
//	-- want --           what `semprop rules test` prints
//
// Keys: pid, uid, comm, oldpath, seq, size, and attr.NAME for extension
// attributes. Events without seq= get their line number among the events.
func TestGolden(t *testing.T) {
	files, _ := filepath.Glob("testdata/cases/*.txt")
	if len(files) == 0 {
		t.Fatal("no test cases")
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			secs, order := sections(t, string(data))
			opts := parseOptions(t, secs["options"])
			set, err := Parse(f, []byte(secs["rules.yaml"]))
			if err != nil {
				t.Fatal(err)
			}
			ndjson := compactToNDJSON(t, secs["events"])
			var out bytes.Buffer
			if err := Test(&out, set, strings.NewReader(ndjson), opts); err != nil {
				t.Fatal(err)
			}
			if *update {
				secs["want"] = out.String()
				if !contains(order, "want") {
					order = append(order, "want")
				}
				var sb strings.Builder
				sb.WriteString(secs[""])
				for _, name := range order {
					fmt.Fprintf(&sb, "-- %s --\n%s", name, secs[name])
				}
				if err := os.WriteFile(f, []byte(sb.String()), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if got := out.String(); got != secs["want"] {
				t.Errorf("output differs (run with -update and review the diff)\ngot:\n%s\nwant:\n%s", got, secs["want"])
			}
		})
	}
}

func contains(s []string, x string) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}

func sections(t *testing.T, s string) (map[string]string, []string) {
	t.Helper()
	secs := map[string]string{}
	var order []string
	cur := ""
	for _, line := range strings.SplitAfter(s, "\n") {
		if strings.HasPrefix(line, "-- ") && strings.HasSuffix(strings.TrimSpace(line), " --") {
			cur = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(line), "-- "), " --")
			order = append(order, cur)
			secs[cur] = ""
			continue
		}
		if cur == "" {
			if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "#") {
				t.Fatalf("text before the first section: %q", line)
			}
			secs[""] += line // the comment at the top
			continue
		}
		secs[cur] += line
	}
	return secs, order
}

func parseOptions(t *testing.T, s string) TestOptions {
	t.Helper()
	var o TestOptions
	for _, f := range strings.Fields(s) {
		k, v, _ := strings.Cut(f, "=")
		var err error
		switch k {
		case "lateness":
			o.Lateness, err = time.ParseDuration(v)
		case "max_rate":
			o.MaxRate, err = strconv.Atoi(v)
		case "max_keys":
			o.Limits.MaxKeys, err = strconv.Atoi(v)
		case "max_partials":
			o.Limits.MaxPartials, err = strconv.Atoi(v)
		case "max_depth":
			o.MaxDepth, err = strconv.Atoi(v)
		case "feedback":
			o.Feedback, err = strconv.ParseBool(v)
		default:
			t.Fatalf("unknown option %q", k)
		}
		if err != nil {
			t.Fatalf("option %s: %v", f, err)
		}
	}
	return o
}

// compactToNDJSON turns the compact event lines into CloudEvents NDJSON.
func compactToNDJSON(t *testing.T, s string) string {
	t.Helper()
	var sb strings.Builder
	n := 0
	for line := range strings.Lines(s) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		n++
		fs := strings.Fields(line)
		if len(fs) < 2 {
			t.Fatalf("event %q: want OFFSET TYPE ...", line)
		}
		off, err := time.ParseDuration(fs[0])
		if err != nil {
			t.Fatalf("event %q: %v", line, err)
		}
		ev := &event.Event{Type: fs[1], Source: "test", Time: goldenBase.Add(off), Seq: uint64(n)}
		ev.ID = event.NewIDAt(ev.Time.UnixNano())
		for _, f := range fs[2:] {
			k, v, ok := strings.Cut(f, "=")
			if !ok {
				ev.Subject = f
				continue
			}
			num := func() int64 {
				x, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					t.Fatalf("event %q: %s: %v", line, k, err)
				}
				return x
			}
			switch {
			case k == "pid":
				ev.Context.SetPID(int32(num()))
			case k == "uid":
				ev.Context.SetUID(uint32(num()))
			case k == "size":
				ev.Context.SetSize(num())
			case k == "comm":
				ev.Context.Comm = v
			case k == "oldpath":
				ev.Context.OldPath = v
			case k == "seq":
				ev.Seq = uint64(num())
			case strings.HasPrefix(k, "attr."):
				ev.SetAttr(strings.TrimPrefix(k, "attr."), v)
			default:
				t.Fatalf("event %q: unknown key %q", line, k)
			}
		}
		sb.Write(ev.AppendJSON(nil))
		sb.WriteByte('\n')
	}
	return sb.String()
}
