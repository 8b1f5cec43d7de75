package fanotify

import (
	"fmt"
	"testing"
)

// BenchmarkParse parses a read buffer of 1000 typical events (a merged
// create with DFID_NAME and FID records, as a filesystem mark delivers
// them) and reports events/s.
func BenchmarkParse(b *testing.B) {
	var w buf
	const n = 1000
	for i := range n {
		w.event(maskCreate|maskModify|maskCloseWrite, int32(i),
			record(infoDFIDName, fidBytes(10), name(fmt.Sprintf("file-%06d.txt", i))),
			record(infoFID, fidBytes(uint32(100+i))))
	}
	b.SetBytes(int64(len(w.b)))
	b.ReportAllocs()
	var ev rawEvent
	events := 0
	for b.Loop() {
		p := parser{buf: w.b}
		for {
			ok, err := p.next(&ev)
			if err != nil || !ok {
				break
			}
			events++
		}
	}
	b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(b.Elapsed().Seconds()*1e9/float64(events), "ns/event")
}
