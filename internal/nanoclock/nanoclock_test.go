package nanoclock

import (
	"testing"
	"time"
)

// TestMono: Mono is the clock time.Since measures with.
func TestMono(t *testing.T) {
	start, m0 := time.Now(), Mono()
	time.Sleep(20 * time.Millisecond)
	since, d := time.Since(start), time.Duration(Mono()-m0)
	if diff := (since - d).Abs(); diff > time.Millisecond {
		t.Fatalf("Mono advanced %v while time.Since says %v", d, since)
	}
	if d < 20*time.Millisecond {
		t.Fatalf("Mono advanced %v over a 20ms sleep", d)
	}
}

// TestWall: Wall stays within a millisecond of time.Now, across a reanchor.
func TestWall(t *testing.T) {
	check := func() {
		t.Helper()
		before := time.Now().UnixNano()
		w := Wall()
		after := time.Now().UnixNano()
		if w < before-int64(time.Millisecond) || w > after+int64(time.Millisecond) {
			t.Fatalf("Wall %d outside time.Now's [%d, %d] by more than 1ms", w, before, after)
		}
	}
	check()
	a := current.Load()
	// Age the anchor past Reanchor: Wall must read the wall clock again.
	current.Store(&anchor{wall: a.wall - int64(time.Hour), mono: a.mono - int64(Reanchor)})
	check()
	if b := current.Load(); b.mono <= a.mono {
		t.Fatalf("an anchor older than Reanchor was not replaced")
	}
	if got := Now().UnixNano() - time.Now().UnixNano(); got > int64(time.Millisecond) || got < -int64(time.Millisecond) {
		t.Fatalf("Now is %v off time.Now", time.Duration(got))
	}
}

// BenchmarkRead: one read of each clock, time.Now as the baseline.
func BenchmarkRead(b *testing.B) {
	for _, c := range []struct {
		name string
		read func() int64
	}{
		{"time.Now", func() int64 { return time.Now().UnixNano() }},
		{"Wall", Wall},
		{"Mono", Mono},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			var s int64
			for b.Loop() {
				s += c.read()
			}
			_ = s
		})
	}
}

// TestWallAt: WallAt converts the reading it is given, not the time it is
// called at.
func TestWallAt(t *testing.T) {
	m := Mono()
	now := WallAt(m)
	if hourAgo := WallAt(m - int64(time.Hour)); now-hourAgo != int64(time.Hour) {
		t.Fatalf("WallAt an hour earlier is %v before, want 1h", time.Duration(now-hourAgo))
	}
	if d := time.Duration(now - time.Now().UnixNano()).Abs(); d > time.Millisecond {
		t.Fatalf("WallAt(Mono()) is %v off time.Now", d)
	}
}
