package output

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/semprop/semprop/event"
)

// readAll reads every line of the NDJSON files in dir whose names start
// with prefix, oldest rotation first and the active file last.
func readAll(t *testing.T, dir, prefix string) (seqs []uint64, files int) {
	t.Helper()
	names, _ := filepath.Glob(filepath.Join(dir, prefix+"*"))
	sort.Slice(names, func(i, j int) bool {
		// The active file (no time in its name) comes last.
		ai, aj := strings.Count(filepath.Base(names[i]), "-"), strings.Count(filepath.Base(names[j]), "-")
		if ai != aj {
			return ai > aj
		}
		return names[i] < names[j]
	})
	dec, _ := zstd.NewReader(nil)
	defer dec.Close()
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(n, ".zst") {
			if b, err = dec.DecodeAll(b, nil); err != nil {
				t.Fatalf("%s: %v", n, err)
			}
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			var ev struct {
				Seq uint64 `json:"seq"`
			}
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				t.Fatalf("%s: %q: %v", n, sc.Text(), err)
			}
			seqs = append(seqs, ev.Seq)
		}
	}
	return seqs, len(names)
}

func TestFileRotationAndZstd(t *testing.T) {
	for _, compress := range []string{"", "zstd"} {
		t.Run("compress="+compress, func(t *testing.T) {
			e := newEnv(t)
			dir := filepath.Join(e.dir, "files")
			name, maxBytes := "events.ndjson", int64(20000)
			if compress != "" {
				name, maxBytes = name+".zst", 1500
			}
			r := start(t, e, Options{Outputs: []Config{{Name: "f", Type: TypeFile, BatchSize: 50,
				File: &FileConfig{Path: filepath.Join(dir, name), MaxBytes: maxBytes, Compress: compress}}}})
			for range 10 {
				e.publish(t, "fs.write", 100, 4)
			}
			r.waitSent(t, "f", 1000)
			_ = r.stop()
			seqs, files := readAll(t, dir, "events")
			if len(seqs) != 1000 {
				t.Fatalf("%d events in the files, want 1000", len(seqs))
			}
			for i, s := range seqs {
				if s != uint64(i+1) {
					t.Fatalf("event %d has seq %d: files out of order or incomplete", i, s)
				}
			}
			if files < 3 {
				t.Errorf("%d files: MaxBytes %d did not rotate", files, maxBytes)
			}
		})
	}
}

func TestFileRotatesByAge(t *testing.T) {
	dir := t.TempDir()
	s, err := newFile(&FileConfig{Path: filepath.Join(dir, "a.ndjson"), RotateEvery: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Now()
	s.now = func() time.Time { return now }
	ev := &event.Event{Type: "fs.write", Seq: 1}
	for range 2 {
		if err := s.Send(t.Context(), []*event.Event{ev}); err != nil {
			t.Fatal(err)
		}
	}
	now = now.Add(61 * time.Minute)
	if err := s.Send(t.Context(), []*event.Event{ev}); err != nil {
		t.Fatal(err)
	}
	names, _ := filepath.Glob(filepath.Join(dir, "a*"))
	if len(names) != 2 {
		t.Errorf("files %v: want the rotated one and the new one", names)
	}
}
