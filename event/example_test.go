package event_test

import (
	"fmt"
	"time"

	"github.com/semprop/semprop/event"
)

func ExampleEvent_AppendJSON() {
	e := event.Event{
		SourceID: "42",
		Type:     "vector.insert",
		Source:   "app://indexer",
		Subject:  "/data/notes/a.md",
		Time:     time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC),
		Data:     []byte(`{"dims":768}`),
	}
	e.Context.SetPID(4242)
	fmt.Println(string(e.AppendJSON(nil)))
	// Output:
	// {"specversion":"1.0","id":"42","source":"app://indexer","type":"vector.insert","subject":"/data/notes/a.md","time":"2026-11-27T10:00:00Z","priority":"normal","pid":4242,"data":{"dims":768}}
}

func ExampleValidType() {
	fmt.Println(event.ValidType("fs.write"), event.ValidType("fs.*"), event.ValidType("Fs.Write"))
	// Output: true false false
}
