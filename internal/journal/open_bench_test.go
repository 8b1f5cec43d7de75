package journal

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// openBenchSegment is the segment size of the generated journals: small,
// so that a benchmark holds many segments without gigabytes of disk.
const openBenchSegment = 1 << 20

// genJournal writes a journal of segs full segments of openBenchSegment
// bytes and one more (1 KiB payloads) into a new directory under parent
// and closes it cleanly. It is written with fsync=interval (an hour: the
// journal fsyncs each segment when it seals it, as with the default
// policy, and not in between).
func genJournal(b *testing.B, parent string, segs int) string {
	b.Helper()
	dir, err := os.MkdirTemp(parent, "journal")
	if err != nil {
		b.Fatal(err)
	}
	j, err := Open(Options{Dir: dir, SegmentSize: openBenchSegment, Fsync: FsyncInterval, FsyncInterval: time.Hour, Logger: discardLogger()})
	if err != nil {
		b.Fatal(err)
	}
	payload := make([]byte, 1024)
	for i := range payload {
		payload[i] = byte(i)
	}
	// Enough records to fill segs segments and start one more.
	records := segs*openBenchSegment/(len(payload)+headerSize) + 1
	for records > 0 {
		n := min(records, 64)
		if _, err := j.Write(n, func(_ int, _ uint64, dst []byte) ([]byte, error) { return append(dst, payload...), nil }); err != nil {
			b.Fatal(err)
		}
		records -= n
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

// BenchmarkOpen is the time Open takes on a journal of 1, 10, 100 and
// 1000 sealed segments of 1 MiB (and a last one with one record), after a
// clean shutdown and after a crash (no marker). The page cache holds the
// files (the benchmark measures the work Open does, not the disk). Each
// journal is generated once and opened by both modes.
func BenchmarkOpen(b *testing.B) {
	parent := b.TempDir()
	dirs := map[int]string{}
	for _, mode := range []string{"clean", "crash"} {
		for _, segs := range []int{1, 10, 100, 1000} {
			b.Run(fmt.Sprintf("%s/segments=%d", mode, segs), func(b *testing.B) {
				dir, ok := dirs[segs]
				if !ok {
					dir = genJournal(b, parent, segs)
					dirs[segs] = dir
				}
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
					if n := j.Stats().Segments; n != segs+1 {
						b.Fatalf("journal has %d segments, want %d", n, segs+1)
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

// BenchmarkOpenLastSegment is the time Open takes to scan a last segment
// of 64 MiB (the default segment size, nearly full), which Open always
// scans: the rest of an open's cost at the default size.
func BenchmarkOpenLastSegment(b *testing.B) {
	dir := b.TempDir()
	j, err := Open(Options{Dir: dir, Fsync: FsyncNever, Logger: discardLogger()})
	if err != nil {
		b.Fatal(err)
	}
	payload := make([]byte, 1024)
	for records := (DefaultSegmentSize - 1<<20) / (len(payload) + headerSize); records > 0; records -= 64 {
		if _, err := j.Write(min(records, 64), func(_ int, _ uint64, dst []byte) ([]byte, error) { return append(dst, payload...), nil }); err != nil {
			b.Fatal(err)
		}
	}
	if err := j.Close(); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		j, err := Open(Options{Dir: dir, Fsync: FsyncNever, Logger: discardLogger()})
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if n := j.Stats().Segments; n != 1 {
			b.Fatalf("journal has %d segments, want 1", n)
		}
		if err := j.Close(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// BenchmarkOpen100GB is Open of a journal shaped like 100 GB at the
// default segment size, without its bytes: 1600 sealed segments (of 1 MiB
// here; Open does not read sealed segments, so their size does not matter)
// and a last segment of 63 MiB, which Open scans. After a clean shutdown
// and after a crash (no marker).
func BenchmarkOpen100GB(b *testing.B) {
	const sealed = 1600
	dir := genJournal(b, b.TempDir(), sealed)
	j, err := Open(Options{Dir: dir, Fsync: FsyncInterval, FsyncInterval: time.Hour, Logger: discardLogger()})
	if err != nil {
		b.Fatal(err)
	}
	payload := make([]byte, 1024)
	for records := (DefaultSegmentSize - 1<<20) / (len(payload) + headerSize); records > 0; records -= 64 {
		if _, err := j.Write(min(records, 64), func(_ int, _ uint64, dst []byte) ([]byte, error) { return append(dst, payload...), nil }); err != nil {
			b.Fatal(err)
		}
	}
	if err := j.Close(); err != nil {
		b.Fatal(err)
	}
	for _, mode := range []string{"clean", "crash"} {
		b.Run(mode, func(b *testing.B) {
			for b.Loop() {
				if mode == "crash" {
					b.StopTimer()
					crashCopy(b, dir)
					b.StartTimer()
				}
				j, err := Open(Options{Dir: dir, Logger: discardLogger()})
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if st := j.Stats(); st.Segments != sealed+1 || st.Bytes < sealed<<20+DefaultSegmentSize/2 {
					b.Fatalf("journal has %d segments, %d bytes; want %d and more", st.Segments, st.Bytes, sealed+1)
				}
				if err := j.Close(); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
	}
}
