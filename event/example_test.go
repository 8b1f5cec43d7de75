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
	fmt.Println(event.ValidType("fs.write"), event.ValidType("fs.*"), event.ValidType("com.example.Object.Created"), event.ValidType("fs write"))
	// Output: true false true false
}

// A binary-mode body with line breaks becomes compact data: the structured
// JSON of any event stays on one line.
func ExampleParseBinaryMode() {
	header := map[string][]string{
		"Ce-Specversion": {"1.0"}, "Ce-Id": {"42"}, "Ce-Source": {"app://indexer"},
		"Ce-Type": {"vector.insert"}, "Ce-Subject": {"/data/caf%C3%A9.md"},
		"Content-Type": {"application/json"},
	}
	e, err := event.ParseBinaryMode(header, []byte("{\n  \"dims\": 768\n}\n"))
	fmt.Println(err)
	fmt.Println(e.Subject, string(e.Data))
	_, err = event.ParseBinaryMode(header, []byte("{\"dims\":"))
	fmt.Println(err)
	// Output:
	// <nil>
	// /data/café.md {"dims":768}
	// event: field data: body is not the JSON its Content-Type "application/json" claims: malformed JSON at offset 8: unexpected character
}

func ExampleCheckNetworkOrigin() {
	e := &event.Event{SourceID: "1", Source: "app://x", Type: "fs.write", Subject: "/etc/shadow"}
	fmt.Println(event.CheckNetworkOrigin(e))
	e.Type = "doc.updated"
	e.Context.Comm = "mkdir"
	fmt.Println(event.CheckNetworkOrigin(e))
	// Output:
	// event: field type: types fs.* and semprop.* are reserved for events semprop produces, got "fs.write"
	// event: field comm: capture context is set by semprop, not by a publisher
}
