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

// FuzzFraming publishes arbitrary bodies in structured, batch and binary
// mode and replays what was accepted: every replayed line is one event of
// valid, line-break-free JSON that decodes.
func FuzzFraming(f *testing.F) {
	for _, d := range framingData {
		one := `{"specversion":"1.0","id":"1","source":"app://f","type":"t.f","data":` + d + "}\n"
		f.Add(uint8(0), "", []byte(one))
		f.Add(uint8(1), "", []byte("[\r\n"+one+",\n"+one+"]\n"))
		f.Add(uint8(2), "application/json", []byte(d))
		f.Add(uint8(2), "application/x+json; charset=utf-8", []byte(d))
	}
	f.Add(uint8(2), "text/plain", []byte("a\nb\r\n"))
	f.Add(uint8(2), "application/json", []byte("{\"a\":"))
	f.Add(uint8(0), "", []byte("{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"s\",\"type\":\"t\",\"subject\":\"\xff\"}"))
	ts := newTestServer(f, Options{MaxBody: 1 << 16})
	hc := &http.Client{Timeout: 10 * time.Second}
	f.Fuzz(func(t *testing.T, mode uint8, ctype string, body []byte) {
		req, _ := http.NewRequest(http.MethodPost, ts.URL+"/v1/events", bytes.NewReader(body))
		switch mode % 3 {
		case 0:
			req.Header.Set("Content-Type", event.MediaType)
		case 1:
			req.Header.Set("Content-Type", event.MediaTypeBatch)
		case 2:
			for k, v := range map[string]string{"Ce-Specversion": "1.0", "Ce-Id": "1", "Ce-Source": "app://f", "Ce-Type": "t.f"} {
				req.Header.Set(k, v)
			}
			if !strings.ContainsAny(ctype, "\r\n\x00") {
				req.Header.Set("Content-Type", ctype)
			}
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var out struct{ Seqs []uint64 }
		json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return
		}
		if len(out.Seqs) == 0 {
			t.Fatal("200 without seqs")
		}
		resp, err = hc.Get(fmt.Sprintf("%s/v1/events?after=%d&limit=%d", ts.URL, out.Seqs[0]-1, len(out.Seqs)))
		if err != nil {
			t.Fatal(err)
		}
		replayed, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		lines := strings.Split(strings.TrimSuffix(string(replayed), "\n"), "\n")
		if len(lines) != len(out.Seqs) {
			t.Fatalf("replay of %d events wrote %d lines: %q", len(out.Seqs), len(lines), replayed)
		}
		for _, l := range lines {
			if strings.ContainsAny(l, "\r\u2028\u2029") {
				t.Fatalf("replayed line holds a line break: %q", l)
			}
			var ev event.Event
			if err := ev.UnmarshalJSON([]byte(l)); err != nil {
				t.Fatalf("replayed line does not decode: %v: %q", err, l)
			}
		}
	})
}

// TestFramingIngestRefuses: what CloudEvents 1.0 requires (id, source) and
// what only valid Unicode can carry are checked on every input mode, with
// a 400 that names the field; nothing is stored.
func TestFramingIngestRefuses(t *testing.T) {
	ts := newTestServer(t, Options{})
	binary := func(attrs map[string]string) http.Header {
		h := http.Header{"Content-Type": {"application/json"}}
		for k, v := range map[string]string{"Ce-Specversion": "1.0", "Ce-Id": "1", "Ce-Source": "app://t", "Ce-Type": "t.x"} {
			h.Set(k, v)
		}
		for k, v := range attrs {
			if v == "" {
				h.Del(k)
			} else {
				h.Set(k, v)
			}
		}
		return h
	}
	const ok = `"specversion":"1.0","type":"t.x"`
	for _, tc := range []struct {
		name   string
		header http.Header
		body   string
		field  string
	}{
		{"structured without id", http.Header{"Content-Type": {event.MediaType}}, `{` + ok + `,"source":"app://t"}`, "id"},
		{"structured without source", http.Header{"Content-Type": {event.MediaType}}, `{` + ok + `,"id":"1"}`, "source"},
		{"structured empty source", http.Header{"Content-Type": {event.MediaType}}, `{` + ok + `,"id":"1","source":""}`, "source"},
		{"plain json without id", http.Header{"Content-Type": {"application/json"}}, `{` + ok + `,"source":"app://t"}`, "id"},
		{"batch without source", http.Header{"Content-Type": {event.MediaTypeBatch}}, `[{` + ok + `,"id":"1","source":"s"},{` + ok + `,"id":"2"}]`, "[1].source"},
		{"binary without id", binary(map[string]string{"Ce-Id": ""}), `1`, "id"},
		{"binary without source", binary(map[string]string{"Ce-Source": ""}), `1`, "source"},
		{"structured invalid UTF-8", http.Header{"Content-Type": {event.MediaType}}, "{" + ok + ",\"id\":\"1\",\"source\":\"s\",\"subject\":\"a\xffb\"}", "subject"},
		{"structured lone surrogate", http.Header{"Content-Type": {event.MediaType}}, `{` + ok + `,"id":"1","source":"s","tenant":"\udc00"}`, "tenant"},
		{"structured data invalid UTF-8", http.Header{"Content-Type": {event.MediaType}}, "{" + ok + ",\"id\":\"1\",\"source\":\"s\",\"data\":[\"\xc3\"]}", "data"},
		{"batch invalid UTF-8", http.Header{"Content-Type": {event.MediaTypeBatch}}, "[{" + ok + ",\"id\":\"1\",\"source\":\"s\",\"subject\":\"\xed\xa0\x80\"}]", "[0].subject"},
		{"binary header invalid UTF-8", binary(map[string]string{"Ce-Subject": "%FF%FE"}), `1`, "subject"},
		{"binary header bad escape", binary(map[string]string{"Ce-Subject": "100%"}), `1`, "subject"},
		{"binary data invalid UTF-8", binary(nil), "\"\xff\"", "data"},
	} {
		req, _ := http.NewRequest(http.MethodPost, ts.URL+"/v1/events", strings.NewReader(tc.body))
		req.Header = tc.header
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var e apiError
		json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || e.Field != tc.field {
			t.Errorf("%s: %d %+v, want 400 naming %s", tc.name, resp.StatusCode, e, tc.field)
		}
	}
	// Binary-mode headers are percent-decoded, as the HTTP binding says.
	req, _ := http.NewRequest(http.MethodPost, ts.URL+"/v1/events", strings.NewReader(`{"k":1}`))
	req.Header = binary(map[string]string{"Ce-Subject": "/data/caf%C3%A9 %25.md", "Ce-Tenant": `"a \"b\""`})
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("percent-encoded binary publish = %d", resp.StatusCode)
	}
	var got []*event.Event
	if _, err := ts.c.Replay(context.Background(), client.Selector{}, 0, 100, func(e *event.Event) error { got = append(got, e); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 {
		t.Fatalf("%d events stored, want only the valid one", len(got))
	}
	if tenant, _ := got[0].Attr("tenant"); got[0].Subject != "/data/café %.md" || tenant != `a "b"` {
		t.Errorf("decoded subject %q tenant %q, want %q and %q", got[0].Subject, tenant, "/data/café %.md", `a "b"`)
	}
}
