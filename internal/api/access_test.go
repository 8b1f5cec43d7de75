package api

import (
	"io"
	"net/http"
	"testing"
)

// TestHandleAccess: a route added with AccessSubscribe serves subscribers
// (and tells the handler who calls), AccessPublic serves anyone, and
// Handle keeps requiring admin.
func TestHandleAccess(t *testing.T) {
	ts := authServer(t)
	who := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, Caller(r).Name) })
	ts.api.HandleAccess("GET /v1/x/sub", AccessSubscribe, who)
	ts.api.HandleAccess("GET /v1/x/pub", AccessPublic, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "open") }))
	ts.api.Handle("GET /v1/x/admin", who)
	for _, c := range []struct {
		path, token string
		code        int
		body        string
	}{
		{"/v1/x/sub", tokSub, 200, "sub"},
		{"/v1/x/sub", tokPub, 403, ""},
		{"/v1/x/sub", "", 401, ""},
		{"/v1/x/pub", "", 200, "open"},
		{"/v1/x/admin", tokSub, 403, ""},
		{"/v1/x/admin", tokAdmin, 200, "admin"},
	} {
		req, _ := http.NewRequest("GET", ts.URL+c.path, nil)
		if c.token != "" {
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.code || (c.body != "" && string(b) != c.body) {
			t.Errorf("%s with %q: %d %q, want %d %q", c.path, c.token, resp.StatusCode, b, c.code, c.body)
		}
	}
}
