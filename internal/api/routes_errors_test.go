package api

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestRoutesErrors: a malformed body names the offset or field; the
// answer does not escape ">" (\u003e); a selector error says route: once.
func TestRoutesErrors(t *testing.T) {
	ts := newTestServer(t, Options{})
	for _, tc := range []struct {
		body, field, says string
	}{
		{`{"name":"r1","type":"a.>.b"}`, "type", `a.>.b`},
		{`{"name":"r1",`, "offset 13", ""},
		{`{"name":"r1","targets":"w1"}`, "targets", ""},
		{`[{"name":"r1"},{"name":7}]`, "[1].name", ""},
	} {
		resp, err := http.Post(ts.URL+"/v1/routes", "application/json", strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body := string(b)
		if resp.StatusCode != 400 {
			t.Errorf("POST /v1/routes %s = %d, want 400", tc.body, resp.StatusCode)
		}
		if !strings.Contains(body, `"field":"`+tc.field+`"`) {
			t.Errorf("POST /v1/routes %s = %s, want field %q", tc.body, body, tc.field)
		}
		if strings.Contains(body, `\u003e`) {
			t.Errorf("POST /v1/routes %s = %s: > is escaped", tc.body, body)
		}
		if tc.says != "" && !strings.Contains(body, tc.says) {
			t.Errorf("POST /v1/routes %s = %s, want it to say %s", tc.body, body, tc.says)
		}
		if n := strings.Count(body, "route:"); n > 1 {
			t.Errorf("POST /v1/routes %s = %s: says route: %d times", tc.body, body, n)
		}
	}
}

func TestJSONQuoteKeepsGreaterThan(t *testing.T) {
	if got, want := jsonQuote("a.> \"x\"\n"), `"a.> \"x\"\n"`; got != want {
		t.Errorf("jsonQuote = %s, want %s", got, want)
	}
}
