package journal

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// openBenchSegment is the segment size of the generated journals: small,
// so that a benchmark holds many segments without gigabytes of disk.
const openBenchSegment = 4 << 20

// genJournal writes a journal of about segs segments of openBenchSegment
// bytes (1 KiB payloads) into a new directory and closes it cleanly.
func genJournal(b *testing.B, segs int) string {
	b.Helper()
	dir := b.TempDir()
	j, err := Open(Options{Dir: dir, SegmentSize: openBenchSegment, Fsync: FsyncNever, Logger: discardLogger()})
	if err != nil {
		b.Fatal(err)
	}
	payload := make([]byte, 1024)
	for i := range payload {
		payload[i] = byte(i)
	}
	perSeg := openBenchSegment / (len(payload) + headerSize)
	for range segs {
		for range perSeg / 64 {
			if _, err := j.Write(64, func(_ int, _ uint64, dst []byte) ([]byte, error) { return append(dst, payload...), nil }); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := j.Close(); err != nil {
		b.Fatal(err)
	}
	return dir
}

// crashCopy makes dir look like a journal that crashed: no clean-shutdown
// marker.
func crashCopy(b *testing.B, dir string) {
	b.Helper()
	if err := os.Remove(filepath.Join(dir, cleanName)); err != nil && !os.IsNotExist(err) {
		b.Fatal(err)
	}
}

// BenchmarkOpen is the time Open takes on a journal of 1, 10 and 100
// segments of 4 MiB, after a clean shutdown and after a crash (no marker).
// The page cache holds the files (the benchmark measures the work Open
// does, not the disk).
func BenchmarkOpen(b *testing.B) {
	for _, mode := range []string{"clean", "crash"} {
		for _, segs := range []int{1, 10, 100} {
			b.Run(fmt.Sprintf("%s/segments=%d", mode, segs), func(b *testing.B) {
				dir := genJournal(b, segs)
				b.ResetTimer()
				for b.Loop() {
					if mode == "crash" {
						b.StopTimer()
						crashCopy(b, dir)
						b.StartTimer()
					}
					j, err := Open(Options{Dir: dir, SegmentSize: openBenchSegment, Fsync: FsyncNever, Logger: discardLogger()})
					if err != nil {
						b.Fatal(err)
					}
					b.StopTimer()
					if n := j.Stats().Segments; n < segs {
						b.Fatalf("journal has %d segments, want at least %d", n, segs)
					}
					if err := j.Close(); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
				}
			})
		}
	}
}
