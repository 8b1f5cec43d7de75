package ui

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/semprop/semprop/internal/auth"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		poll time.Duration
		err  error
	}{
		{0, nil},
		{250 * time.Millisecond, nil},
		{2 * time.Second, nil},
		{time.Minute, nil},
		{100 * time.Millisecond, ErrPoll},
		{2 * time.Minute, ErrPoll},
		{-time.Second, ErrPoll},
	} {
		err := Config{Enabled: true, Poll: tc.poll}.Validate()
		if !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
			t.Errorf("Config{Poll: %s}.Validate() = %v, want %v", tc.poll, err, tc.err)
		}
	}
	if _, err := New(Options{Config: Config{Poll: time.Millisecond}}); !errors.Is(err, ErrPoll) {
		t.Errorf("New with a 1ms poll: %v, want %v", err, ErrPoll)
	}
}

func TestServesAssets(t *testing.T) {
	e := newEnv(t, nil, Config{Enabled: true, Poll: 1500 * time.Millisecond})
	for _, tc := range []struct {
		path, ctype, contains string
	}{
		{"/ui/", "text/html", `content="1500"`},
		{"/ui/index.html", "text/html", "<title>semprop dashboard</title>"},
		{"/ui/app.js", "text/javascript", "window.__semprop"},
		{"/ui/stream.js", "text/javascript", "/v1/analytics/live"},
		{"/ui/app.css", "text/css", ".panel"},
		{"/ui/vendor/uPlot.iife.min.js", "text/javascript", "uPlot"},
		{"/ui/vendor/uPlot.min.css", "text/css", ".uplot"},
		{"/ui/vendor/LICENSE", "text/plain", "MIT"},
	} {
		res := get(t, e.url+tc.path, "")
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %s", tc.path, res.Status)
			continue
		}
		if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, tc.ctype) {
			t.Errorf("GET %s: Content-Type %q, want %s", tc.path, ct, tc.ctype)
		}
		if !strings.Contains(string(body), tc.contains) {
			t.Errorf("GET %s: body lacks %q", tc.path, tc.contains)
		}
		if csp := res.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("GET %s: Content-Security-Policy %q", tc.path, csp)
		}
		if res.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: no nosniff", tc.path)
		}
		// The ETag answers a revalidation with 304 and no body.
		res2 := get(t, e.url+tc.path, "", "If-None-Match", res.Header.Get("ETag"))
		b2, _ := io.ReadAll(res2.Body)
		res2.Body.Close()
		if res2.StatusCode != http.StatusNotModified || len(b2) != 0 {
			t.Errorf("GET %s with If-None-Match: %s, %d bytes; want 304, none", tc.path, res2.Status, len(b2))
		}
	}
	// No inline script: the CSP would block it.
	res := get(t, e.url+"/ui/", "")
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if strings.Contains(string(body), "<script>") || strings.Contains(string(body), "{{") {
		t.Errorf("index.html has an inline script or an unreplaced placeholder")
	}
}

func TestNotFoundAndRedirect(t *testing.T) {
	e := newEnv(t, nil, DefaultConfig())
	for _, p := range []string{"/ui/nope.js", "/ui/vendor/", "/ui/../v1/status"} {
		res := get(t, e.url+p, "")
		res.Body.Close()
		if p == "/ui/../v1/status" { // cleaned by the mux: a redirect, never a file
			if res.StatusCode == http.StatusOK {
				t.Errorf("GET %s: %s", p, res.Status)
			}
			continue
		}
		if res.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %s, want 404", p, res.Status)
		}
	}
	res := get(t, e.url+"/ui", "")
	res.Body.Close()
	if res.StatusCode != http.StatusMovedPermanently || res.Header.Get("Location") != "/ui/" {
		t.Errorf("GET /ui: %s Location %q, want 301 to /ui/", res.Status, res.Header.Get("Location"))
	}
}

// TestPublicButAPINeedsToken: with tokens configured the page loads
// without one (it holds no data), while the stream it reads needs one.
func TestPublicButAPINeedsToken(t *testing.T) {
	e := newEnv(t, []auth.TokenSpec{{Name: "viewer", Token: "viewer-secret-0123456789", Scopes: []string{"subscribe:>"}}}, DefaultConfig())
	for _, p := range []string{"/ui/", "/ui/app.js", "/ui/stream.js"} {
		res := get(t, e.url+p, "")
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Errorf("GET %s without token: %s, want 200", p, res.Status)
		}
	}
	res := get(t, e.url+"/v1/stream?after=now", "")
	res.Body.Close()
	if res.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET /v1/stream without token: %s, want 401", res.Status)
	}
	// A page of another site may load nothing but the static files, and
	// the cross-site check still guards the API.
	res = get(t, e.url+"/v1/stream?after=now", "viewer-secret-0123456789", "Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example")
	res.Body.Close()
	if res.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site GET /v1/stream: %s, want 403", res.Status)
	}
}

func TestCollectorCountsPageLoads(t *testing.T) {
	e := newEnv(t, nil, DefaultConfig())
	for range 3 {
		res := get(t, e.url+"/ui/", "")
		res.Body.Close()
	}
	if got := counterValue(t, e.ui, "index.html"); got != 3 {
		t.Errorf("semprop_ui_requests_total{file=index.html} = %v, want 3", got)
	}
	// Through a registry, as the daemon exposes it.
	reg := prometheus.NewRegistry()
	reg.MustRegister(e.ui.Collector())
	n, err := testutil.GatherAndCount(reg, "semprop_ui_requests_total")
	if err != nil || n < 8 { // one series per embedded file, requested or not
		t.Errorf("gathered %d semprop_ui_requests_total series (%v), want one per file", n, err)
	}
}

func counterValue(t *testing.T, u *UI, file string) float64 {
	t.Helper()
	return testutil.ToFloat64(u.served.WithLabelValues(file))
}
