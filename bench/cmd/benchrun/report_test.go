package main

import (
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
