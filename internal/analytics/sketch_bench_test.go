package analytics

import (
	"fmt"
	"testing"

	"github.com/zeebo/xxh3"
)

// The sketches' costs per update, behind the choices in docs/analytics.md.

func BenchmarkHLLAdd(b *testing.B) {
	var h hll
	keys := make([]string, 1<<16)
	for i := range keys {
		keys[i] = fmt.Sprintf("/srv/data/f%d", i)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		h.addHash(xxh3.HashString(keys[i&(len(keys)-1)]))
		i++
	}
}

func BenchmarkSpaceSavingAdd(b *testing.B) {
	s := newSpaceSaving(2048)
	keys := make([]string, 1<<16)
	for i := range keys {
		keys[i] = fmt.Sprintf("/srv/data/f%d", i*i%50000)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		s.add(keys[i&(len(keys)-1)], 1)
		i++
	}
}

func BenchmarkDDSketchAdd(b *testing.B) {
	var d ddSketch
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		d.add(float64(1 + i%65536))
		i++
	}
}

func BenchmarkExactMapAdd(b *testing.B) {
	p := newSecondPane(2048, false)
	p.resetTo(0)
	keys := make([]string, 1<<16)
	for i := range keys {
		keys[i] = fmt.Sprintf("proc%d", i%200)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		c := p.cellOf(dimComm, keys[i&(len(keys)-1)], 10000)
		c.count++
		i++
	}
}
