package main

import (
	"math"
	"os"
	"strings"
	"testing"
	"time"
)

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{3}, 3},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1, 3, 2}, 2.5},
	} {
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestVerdict(t *testing.T) {
	for _, tc := range []struct {
		s, p   float64
		better better
		want   string
	}{
		{200, 100, higher, "semprop better"},
		{50, 100, higher, "**semprop worse**"},
		{50, 100, lower, "semprop better"},
		{200, 100, lower, "**semprop worse**"},
		{101, 100, lower, "≈ tie"},
	} {
		l := &line{peer: "p", better: tc.better, s: []float64{tc.s}, p: []float64{tc.p}}
		if got := l.verdict(); got != tc.want {
			t.Errorf("verdict(%v vs %v, %v) = %q, want %q", tc.s, tc.p, tc.better, got, tc.want)
		}
	}
}

func TestCPUPID(t *testing.T) {
	start := time.Now()
	for time.Since(start) < 50*time.Millisecond {
	}
	got := cpuPID(os.Getpid())
	if got < 10*time.Millisecond || got > cpuSelf()+20*time.Millisecond {
		t.Errorf("cpuPID(self) = %v, want about %v", got, cpuSelf())
	}
}

func TestSinkWait(t *testing.T) {
	sk := newSink(2)
	sk.expect(4)
	go func() {
		for range 2 {
			sk.recv(0, 1)
			sk.recv(1, 1)
		}
	}()
	if !sk.wait(4, 5*time.Second) {
		t.Fatalf("wait(4) = false after 4 deliveries (got %d)", sk.got.Load())
	}
	sk.expect(5)
	if sk.wait(5, 50*time.Millisecond) {
		t.Errorf("wait(5) = true with only %d deliveries", sk.got.Load())
	}
}

func TestMarkdownKeepsLosingRows(t *testing.T) {
	r := &report{}
	r.lines = append(r.lines, &line{row: 6, name: "x", unit: "ns", better: lower, semprop: "s", peer: "p", s: []float64{10}, p: []float64{5}})
	md := r.markdown()
	if !strings.Contains(md, "**semprop worse**") || !strings.Contains(md, "| 2.00 |") {
		t.Errorf("markdown lacks the losing row or its ratio:\n%s", md)
	}
}

func TestMedianCIRank(t *testing.T) {
	// Ranks of the usual tables of the sign test (two-sided 95%).
	for n, want := range map[int]int{5: 0, 6: 1, 8: 1, 9: 2, 11: 2, 12: 3, 15: 4, 20: 6, 30: 10, 45: 16} {
		if got := medianCIRank(n); got != want {
			t.Errorf("medianCIRank(%d) = %d, want %d", n, got, want)
		}
	}
}

func TestPairedRatio(t *testing.T) {
	// Slow and fast phases move both sides; the per-pair ratio stays 1.1.
	p := []float64{1, 2, 1, 2, 1, 2, 1, 2, 1, 2}
	s := make([]float64, len(p))
	for i := range p {
		s[i] = 1.1 * p[i]
	}
	s[0] = 1.5 // one outlier
	m, lo, hi, ok := pairedRatio(s, p)
	if !ok || math.Abs(m-1.1) > 1e-9 || math.Abs(lo-1.1) > 1e-9 || math.Abs(hi-1.1) > 1e-9 {
		t.Errorf("pairedRatio = %v [%v, %v] %v, want 1.1 [1.1, 1.1]", m, lo, hi, ok)
	}
	if _, lo, _, ok := pairedRatio(s[:4], p[:4]); !ok || !math.IsNaN(lo) {
		t.Errorf("4 pairs: lo = %v, ok %v; want NaN, true", lo, ok)
	}
	if _, _, _, ok := pairedRatio(s, p[:3]); ok {
		t.Error("unequal lengths: ok")
	}
	l := &line{peer: "p", s: s, p: p, paired: true}
	if got := l.ratio(); !strings.Contains(got, "paired 1.10 (95% CI 1.10–1.10)") {
		t.Errorf("ratio() = %q", got)
	}
}
