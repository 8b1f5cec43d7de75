package api

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"
)

// FuzzIngest feeds arbitrary bodies in every ingest mode: the handler never
// panics, answers only with the documented statuses (403 for capture
// context from the network), and a 200 always carries one seq per event.
func FuzzIngest(f *testing.F) {
	for _, seed := range []struct {
		mode uint8
		body string
	}{
		{0, `{"specversion":"1.0","type":"a.b","source":"s","id":"1","data":{"x":1}}`},
		{1, `[{"specversion":"1.0","id":"1","source":"s","type":"a.b"},{"specversion":"1.0","id":"2","source":"s","type":"c","pid":"7"}]`},
		{2, `{"any":"body"}`},
		{3, `[]`},
		{0, `{"specversion":"1.0","id":"1","source":"s","type":"a","data_base64":"AAEC"}`},
	} {
		f.Add(seed.mode, []byte(seed.body))
	}
	ts := newTestServer(f, Options{MaxBody: 1 << 16})
	f.Fuzz(func(t *testing.T, mode uint8, body []byte) {
		req := httptest.NewRequest("POST", "/v1/events", bytes.NewReader(body))
		req.Host = "localhost" // httptest's example.com is not a served host
		switch mode % 4 {
		case 0:
			req.Header.Set("Content-Type", "application/cloudevents+json")
		case 1:
			req.Header.Set("Content-Type", "application/cloudevents-batch+json")
		case 2: // binary mode, headers from the body's first bytes
			req.Header.Set("Content-Type", "application/octet-stream")
			req.Header.Set("Ce-Specversion", "1.0")
			req.Header.Set("Ce-Type", "fuzz.binary")
			req.Header.Set("Ce-Id", "1")
			req.Header.Set("Ce-Source", "fuzz")
			req.Header.Set("Ce-Pid", string(bytes.ToValidUTF8(body[:min(len(body), 8)], nil)))
		case 3:
			req.Header.Set("Content-Type", "application/json")
		}
		w := httptest.NewRecorder()
		ts.api.ServeHTTP(w, req)
		switch w.Code {
		case http.StatusOK:
			if !bytes.HasPrefix(w.Body.Bytes(), []byte(`{"seqs":[`)) {
				t.Fatalf("200 without seqs: %s", w.Body)
			}
		case http.StatusBadRequest, http.StatusForbidden, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType:
			if !bytes.Contains(w.Body.Bytes(), []byte(`"error"`)) {
				t.Fatalf("%d without a JSON error: %s", w.Code, w.Body)
			}
		default:
			t.Fatalf("unexpected status %d: %s", w.Code, w.Body)
		}
	})
}
