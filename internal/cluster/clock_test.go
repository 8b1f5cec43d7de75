package cluster

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestSampleOf(t *testing.T) {
	ms := int64(time.Millisecond)
	tests := []struct {
		name           string
		t0, t1, t2, t3 int64
		want           offsetSample
	}{
		{"same clock", 0, 1 * ms, 2 * ms, 3 * ms, offsetSample{offset: 0, delay: 2 * ms}},
		{"peer 100ms ahead", 0, 101 * ms, 102 * ms, 3 * ms, offsetSample{offset: 100 * ms, delay: 2 * ms}},
		{"peer 100ms behind", 0, -99 * ms, -98 * ms, 3 * ms, offsetSample{offset: -100 * ms, delay: 2 * ms}},
		{"asymmetric path", 0, 3 * ms, 3 * ms, 4 * ms, offsetSample{offset: 1 * ms, delay: 4 * ms}},
	}
	for _, tt := range tests {
		if got := sampleOf(tt.t0, tt.t1, tt.t2, tt.t3); got != tt.want {
			t.Errorf("%s: sampleOf = %+v, want %+v", tt.name, got, tt.want)
		}
	}
}

func TestPeerTableRefusal(t *testing.T) {
	max := 500 * time.Millisecond
	pt := newPeerTable()
	ms := int64(time.Millisecond)
	pt.record("a", offsetSample{offset: 10 * ms, delay: ms}, 1, 1, max)
	if r := pt.refused("a"); r != "" {
		t.Fatalf("10ms offset refused: %s", r)
	}
	// The best (smallest delay) sample decides: a noisy sample with a large
	// delay does not refuse the peer.
	pt.record("a", offsetSample{offset: 700 * ms, delay: 900 * ms}, 1, 1, max)
	if r := pt.refused("a"); r != "" {
		t.Fatalf("noisy sample refused the peer: %s", r)
	}
	for range filterWindow {
		pt.record("a", offsetSample{offset: -800 * ms, delay: ms}, 1, 1, max)
	}
	if r := pt.refused("a"); !strings.Contains(r, ErrClockOffset.Error()) {
		t.Fatalf("800ms behind: refused = %q, want a clock offset refusal", r)
	}
	pt.fail("b", errors.New("connection refused"))
	if r := pt.refused("b"); r != "" {
		t.Fatalf("a network failure refused the peer: %s", r)
	}
	pt.fail("b", ErrClockOffset)
	if r := pt.refused("b"); r == "" {
		t.Fatal("a clock refusal from the peer did not refuse it")
	}
}
