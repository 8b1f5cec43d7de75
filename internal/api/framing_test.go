package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/go-cmp/cmp"

	"github.com/semprop/semprop/client"
	"github.com/semprop/semprop/event"
)

// framingData are JSON payloads whose text holds what breaks line framing:
// line feeds and carriage returns between tokens, a final newline, and
// U+2028/U+2029 inside strings.
var framingData = []string{
	"{\"a\":1}\n",
	"{\n  \"a\": [1,\n 2],\r\n  \"b\": \"x\"\r\n}\r\n",
	"\"x\u2028y\u2029z\"\n",
	"[\"tab\\tnl\\n\", {\"k\": \"\u2028\"}]\n\n",
	"\r\n 42 \r\n",
}

// framingEvent is one event the framing test publishes, with the data every
// output must give back.
type framingEvent struct {
	id   string
	data any // the payload decoded by encoding/json
}

// publishFraming publishes every payload of framingData in structured,
// batch and binary mode, and two events through the Go in-process path
// whose Data is not compact (one not even JSON), as an old journal may
// hold. It returns what was published, in seq order.
func publishFraming(t *testing.T, ts *testServer) []framingEvent {
	t.Helper()
	var want []framingEvent
	post := func(ctype string, hdr http.Header, body string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, ts.URL+"/v1/events", strings.NewReader(body))
		req.Header = hdr.Clone()
		if req.Header == nil {
			req.Header = http.Header{}
		}
		req.Header.Set("Content-Type", ctype)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST %s %q = %d %s", ctype, body, resp.StatusCode, b)
		}
	}
	decoded := func(d string) any {
		var v any
		if err := json.Unmarshal([]byte(d), &v); err != nil {
			t.Fatalf("test payload %q: %v", d, err)
		}
		return v
	}
	structured := func(id, d string) string {
		return "{\n\"specversion\":\"1.0\",\"id\":\"" + id + "\",\"source\":\"app://framing\",\r\n\"type\":\"t.framing\",\"data\":" + d + "}\n"
	}
	for i, d := range framingData {
		id := fmt.Sprintf("s-%d", i)
		post(event.MediaType, nil, structured(id, d))
		want = append(want, framingEvent{id, decoded(d)})
	}
	var batch []string
	for i, d := range framingData {
		id := fmt.Sprintf("b-%d", i)
		batch = append(batch, structured(id, d))
		want = append(want, framingEvent{id, decoded(d)})
	}
	post(event.MediaTypeBatch, nil, "[\n"+strings.Join(batch, ",\r\n")+"]\n")
	for i, d := range framingData {
		id := fmt.Sprintf("x-%d", i)
		ctype := "application/json"
		if i%2 == 1 {
			ctype = "application/vnd.example+json; charset=utf-8"
		}
		post(ctype, http.Header{
			"Ce-Specversion": {"1.0"}, "Ce-Id": {id}, "Ce-Source": {"app://framing"}, "Ce-Type": {"t.framing"},
		}, d)
		want = append(want, framingEvent{id, decoded(d)})
	}
	// The Go in-process path: Data as given, not validated by the manager.
	for i, d := range []string{"{\"a\":\n1}\n", "{\"a\":\n"} {
		id := fmt.Sprintf("g-%d", i)
		ev := &event.Event{SourceID: id, Source: "app://framing", Type: "t.framing", Data: []byte(d)}
		if _, err := ts.m.Publish(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
		var v any
		if json.Unmarshal([]byte(d), &v) != nil {
			v = d // not JSON: must come back as the same bytes (data_base64)
		}
		want = append(want, framingEvent{id, v})
	}
	return want
}

// checkFramed checks that one structured-JSON event, as an output wrote it,
// is on one line, parses and carries the data of want.
func checkFramed(t *testing.T, output string, raw []byte, want framingEvent) {
	t.Helper()
	if i := bytes.IndexAny(raw, "\r\n\u2028\u2029"); i >= 0 {
		t.Errorf("%s: event %s has a line break at byte %d: %q", output, want.id, i, raw)
	}
	var ev event.Event
	if err := ev.UnmarshalJSON(raw); err != nil {
		t.Errorf("%s: event %s does not parse: %v\n%s", output, want.id, err, raw)
		return
	}
	checkEvent(t, output, &ev, want)
}

func checkEvent(t *testing.T, output string, ev *event.Event, want framingEvent) {
	t.Helper()
	if ev.SourceID != want.id {
		t.Errorf("%s: got event %q, want %q", output, ev.SourceID, want.id)
		return
	}
	var got any
	if ev.Flags&event.FlagDataBinary != 0 {
		got = string(ev.Data)
	} else if err := json.Unmarshal(ev.Data, &got); err != nil {
		t.Errorf("%s: event %s data %q: %v", output, want.id, ev.Data, err)
		return
	}
	if diff := cmp.Diff(want.data, got); diff != "" {
		t.Errorf("%s: event %s data (-want +got):\n%s", output, want.id, diff)
	}
}

// TestFramingEveryOutput: data with line breaks, published in every mode,
// reaches every output one event per frame, parseable and intact.
func TestFramingEveryOutput(t *testing.T) {
	ts := newTestServer(t, Options{Heartbeat: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := ts.c.CreateSubscription(ctx, client.Subscription{Name: "framing"}); err != nil {
		t.Fatal(err)
	}
	want := publishFraming(t, ts)

	t.Run("ReplayNDJSON", func(t *testing.T) {
		resp, err := http.Get(ts.URL + "/v1/events?after=0")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		lines := strings.Split(strings.TrimSuffix(string(body), "\n"), "\n")
		if len(lines) != len(want) {
			t.Fatalf("replay wrote %d lines for %d events:\n%s", len(lines), len(want), body)
		}
		for i, l := range lines {
			checkFramed(t, "replay", []byte(l), want[i])
		}
	})

	t.Run("SSE", func(t *testing.T) {
		sctx, scancel := context.WithCancel(ctx)
		defer scancel()
		req, _ := http.NewRequestWithContext(sctx, http.MethodGet, ts.URL+"/v1/stream?after=0", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		br := bufio.NewReader(resp.Body)
		var data [][]byte
		for n := 0; n < len(want); {
			line, err := br.ReadBytes('\n')
			if err != nil {
				t.Fatalf("after %d events: %v", n, err)
			}
			line = bytes.TrimSuffix(line, []byte("\n"))
			switch {
			case len(line) == 0:
				if len(data) > 0 {
					if len(data) != 1 {
						t.Errorf("sse: event %s in %d data lines", want[n].id, len(data))
					}
					checkFramed(t, "sse", bytes.Join(data, []byte("\n")), want[n])
					n++
				}
				data = nil
			case bytes.HasPrefix(line, []byte("data: ")):
				data = append(data, line[len("data: "):])
			case bytes.HasPrefix(line, []byte("id: ")), bytes.HasPrefix(line, []byte("event: ")), line[0] == ':':
			default:
				t.Fatalf("sse: line outside any field: %q", line)
			}
		}
	})

	t.Run("WebSocket", func(t *testing.T) {
		c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(ts.URL, "http")+"/v1/ws?after=0", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseNow()
		for _, w := range want {
			_, msg, err := c.Read(ctx)
			if err != nil {
				t.Fatal(err)
			}
			checkFramed(t, "ws", msg, w)
		}
	})

	t.Run("ConsumerFetch", func(t *testing.T) {
		resp, err := http.Post(ts.URL+"/v1/subscriptions/framing/fetch?max=100&wait=1s", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		lines := strings.Split(strings.TrimSuffix(string(body), "\n"), "\n")
		if len(lines) != len(want) {
			t.Fatalf("fetch wrote %d lines for %d events:\n%s", len(lines), len(want), body)
		}
		for i, l := range lines {
			var d struct {
				Event json.RawMessage `json:"event"`
			}
			if err := json.Unmarshal([]byte(l), &d); err != nil {
				t.Errorf("fetch line %d: %v: %q", i, err, l)
				continue
			}
			checkFramed(t, "fetch", d.Event, want[i])
		}
	})

	t.Run("ClientReplay", func(t *testing.T) {
		var got []*event.Event
		if _, err := ts.c.Replay(ctx, client.Selector{}, 0, 100, func(e *event.Event) error { got = append(got, e); return nil }); err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("Replay gave %d events, want %d", len(got), len(want))
		}
		for i, ev := range got {
			checkEvent(t, "client replay", ev, want[i])
		}
	})

	// The Go client's Stream is what `semprop tail` follows; tail prints
	// each event's AppendJSON on a line of its own.
	t.Run("ClientStreamAndTail", func(t *testing.T) {
		sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
		defer scancel()
		var out bytes.Buffer
		n := 0
		stop := fmt.Errorf("all events seen")
		err := ts.c.Stream(sctx, client.Selector{}, 0, func(ev *event.Event) error {
			checkEvent(t, "client stream", ev, want[n])
			out.Write(append(ev.AppendJSON(nil), '\n'))
			if n++; n == len(want) {
				return stop
			}
			return nil
		})
		if err != stop {
			t.Fatalf("Stream = %v after %d of %d events", err, n, len(want))
		}
		lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
		if len(lines) != len(want) {
			t.Fatalf("tail would print %d lines for %d events", len(lines), len(want))
		}
		for i, l := range lines {
			checkFramed(t, "tail", []byte(l), want[i])
		}
	})

	t.Run("ClientFetch", func(t *testing.T) {
		if err := ts.c.CreateSubscription(ctx, client.Subscription{Name: "framing2"}); err != nil {
			t.Fatal(err)
		}
		ds, err := ts.c.Fetch(ctx, "framing2", 100, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if len(ds) != len(want) {
			t.Fatalf("Fetch gave %d deliveries, want %d", len(ds), len(want))
		}
		for i, d := range ds {
			checkEvent(t, "client fetch", d.Event, want[i])
		}
	})
}

// TestFramingRefusesFalseJSON: a binary-mode body that is not the JSON its
// content type claims is refused with 400 naming data, and nothing is
// stored.
func TestFramingRefusesFalseJSON(t *testing.T) {
	ts := newTestServer(t, Options{})
	for _, tc := range []struct{ ctype, body string }{
		{"application/json", "{\"a\":"},
		{"application/json", "not json\n"},
		{"application/json", "{\"a\":1} {\"b\":2}"},
		{"application/json", "\"\xff\""},
		{"application/json", " \n"},
		{"application/vnd.example+json", "{'a':1}"},
		{"text/json", "[1,]"},
	} {
		req, _ := http.NewRequest(http.MethodPost, ts.URL+"/v1/events", strings.NewReader(tc.body))
		req.Header = http.Header{
			"Content-Type": {tc.ctype}, "Ce-Specversion": {"1.0"}, "Ce-Id": {"1"},
			"Ce-Source": {"app://framing"}, "Ce-Type": {"t.framing"},
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var e apiError
		json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || e.Field != "data" {
			t.Errorf("binary %s %q = %d %+v, want 400 naming data", tc.ctype, tc.body, resp.StatusCode, e)
		}
	}
	// Opaque bytes with line breaks are fine: they travel as data_base64.
	req, _ := http.NewRequest(http.MethodPost, ts.URL+"/v1/events", strings.NewReader("line 1\nline 2\r\n"))
	req.Header = http.Header{
		"Content-Type": {"text/plain"}, "Ce-Specversion": {"1.0"}, "Ce-Id": {"1"},
		"Ce-Source": {"app://framing"}, "Ce-Type": {"t.framing"},
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("binary text/plain = %d, want 200", resp.StatusCode)
	}
	var got []*event.Event
	if _, err := ts.c.Replay(context.Background(), client.Selector{}, 0, 100, func(e *event.Event) error { got = append(got, e); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || string(got[0].Data) != "line 1\nline 2\r\n" || got[0].Flags&event.FlagDataBinary == 0 {
		t.Fatalf("replayed %d events (%+v), want only the text/plain one as opaque bytes", len(got), got)
	}
}
