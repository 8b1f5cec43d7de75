package event

import (
	"testing"
	"unsafe"
)

// TestUnmarshalBinaryReusesStrings: decoding into an Event keeps the
// strings it already holds when they are equal, so a stream decoded into
// one Event allocates only for what changes; a string that changes is
// replaced.
func TestUnmarshalBinaryReusesStrings(t *testing.T) {
	mk := func(subject string) []byte {
		ev := &Event{ID: NewID(), Type: "fs.write", Source: "semprop://host", Subject: subject, Seq: 7}
		ev.Context.Comm, ev.Context.Exe = "rsync", "/usr/bin/rsync"
		b, err := ev.AppendBinary(nil)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	a, b := mk("/srv/a.txt"), mk("/srv/b.txt")
	var ev Event
	if err := ev.UnmarshalBinary(a); err != nil {
		t.Fatal(err)
	}
	typ, comm := unsafe.StringData(ev.Type), unsafe.StringData(ev.Context.Comm)
	if err := ev.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if ev.Subject != "/srv/b.txt" || ev.Type != "fs.write" || ev.Context.Comm != "rsync" {
		t.Fatalf("decoded %+v", ev)
	}
	if unsafe.StringData(ev.Type) != typ || unsafe.StringData(ev.Context.Comm) != comm {
		t.Error("equal strings were copied again")
	}
	if n := testing.AllocsPerRun(100, func() { _ = ev.UnmarshalBinary(a) }); n != 0 {
		t.Errorf("decoding the same event again allocates %v times, want 0", n)
	}
	// The decoded event never aliases the input.
	c := mk("/srv/c.txt")
	if err := ev.UnmarshalBinary(c); err != nil {
		t.Fatal(err)
	}
	for i := range c {
		c[i] = 0
	}
	if ev.Subject != "/srv/c.txt" {
		t.Errorf("the subject changed with the input: %q", ev.Subject)
	}
}
