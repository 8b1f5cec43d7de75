package guard

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzRelease: the body of POST /v1/guard/release, from a client, never
// panics the handler and is answered 200, 400 or 404.
func FuzzRelease(f *testing.F) {
	for _, s := range []string{`{"pid":1234}`, `{"uid":5,"by_uid":true}`, `{}`, `{"pid":-1}`, `{"pid":1e99}`, `[`, `{"pid":1,"x":2}`, ``} {
		f.Add(s)
	}
	g, _ := New(Options{})
	f.Fuzz(func(t *testing.T, body string) {
		w := httptest.NewRecorder()
		g.serveRelease(w, httptest.NewRequest(http.MethodPost, "/v1/guard/release", strings.NewReader(body)))
		switch w.Code {
		case 200, 400, 404:
		default:
			t.Errorf("POST %q = %d", body, w.Code)
		}
		if g.Active() {
			t.Fatal("a release listed something")
		}
	})
}

// FuzzSize: max_file_size never panics and is never negative.
func FuzzSize(f *testing.F) {
	for _, s := range []string{"64MiB", "1GB", "4096", "-1", "9999999999999GiB", " 2 KiB ", "MiB"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		var s Size
		if err := s.UnmarshalText([]byte(in)); err == nil && s < 0 {
			t.Errorf("Size(%q) = %d", in, s)
		}
	})
}
