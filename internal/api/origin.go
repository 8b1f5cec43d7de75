package api

import (
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
)

// A web page the local user visits can send requests to the API: a form or
// a fetch with a "simple" content type needs no CORS preflight, WebSocket
// handshakes need none at all, and DNS rebinding lets a page's own origin
// resolve to 127.0.0.1. Without tokens nothing else stands in its way, so
// ServeHTTP checks three things before routing:
//
//   - Host: an IP literal, localhost, or a name in Options.AllowedHosts. A
//     rebinding page sends its own name, which is none of those. With
//     tokens configured any name is served unless AllowedHosts is set: a
//     rebinding page has no token to send.
//   - Origin (and Sec-Fetch-Site): a request a browser marks as coming
//     from another site, or whose Origin is not the server's own
//     (scheme://Host) nor in Options.AllowedOrigins, is refused on every
//     route but the open GET ones (health, readiness, the OpenAPI
//     document). Programs other than browsers send neither header.
//   - Content-Type: a body sent with a state-changing method must be JSON
//     (application/json or application/*+json; POST /v1/events also takes
//     binary mode, ce-* headers with any type), which a page cannot send
//     cross-origin without a preflight the server never answers.

// hostPolicy decides which Host headers are served.
type hostPolicy struct {
	any      bool            // "*", or tokens without AllowedHosts
	names    map[string]bool // exact names, lower case
	suffixes []string        // from "*.example.com": ".example.com"
}

func newHostPolicy(allowed []string, tokens bool) hostPolicy {
	p := hostPolicy{names: make(map[string]bool), any: tokens && len(allowed) == 0}
	for _, h := range allowed {
		h = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(h), "."))
		switch {
		case h == "*":
			p.any = true
		case strings.HasPrefix(h, "*."):
			p.suffixes = append(p.suffixes, h[1:])
		case h != "":
			p.names[hostOnly(h)] = true
		}
	}
	return p
}

// hostOnly returns the host of a Host header, with or without a port,
// without brackets.
func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return strings.TrimSuffix(strings.TrimPrefix(hostport, "["), "]")
}

func (p hostPolicy) allows(hostport string) bool {
	if p.any {
		return true
	}
	host := strings.ToLower(strings.TrimSuffix(hostOnly(hostport), "."))
	if host == "" {
		return true // HTTP/1.0 without Host: not a browser
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return true // a page's origin is a name, never the IP it rebinds to
	}
	if host == "localhost" || strings.HasSuffix(host, ".localhost") || p.names[host] {
		return true
	}
	for _, s := range p.suffixes {
		if strings.HasSuffix(host, s) {
			return true
		}
	}
	return false
}

// originPolicy decides which browser origins may use the API.
type originPolicy struct {
	any     bool
	trusted map[string]bool // "scheme://host[:port]", lower case
}

func newOriginPolicy(allowed []string) originPolicy {
	p := originPolicy{trusted: make(map[string]bool)}
	for _, o := range allowed {
		o = strings.ToLower(strings.TrimRight(strings.TrimSpace(o), "/"))
		if o == "*" {
			p.any = true
		} else if o != "" {
			p.trusted[o] = true
		}
	}
	return p
}

// allows reports whether r comes from no browser, from the server's own
// origin, or from a trusted one.
func (p originPolicy) allows(r *http.Request) bool {
	if p.any {
		return true
	}
	origin := r.Header.Get("Origin")
	if origin != "" && p.trusted[strings.ToLower(origin)] {
		return true
	}
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
	default: // same-site, cross-site
		return false
	}
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return false // "null" (sandboxed frames, files) and the like
	}
	return strings.EqualFold(u.Host, r.Host)
}

// stateChanging reports whether method may change state.
func stateChanging(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return false
	}
	return true
}

// hasBody reports whether r carries a request body.
func hasBody(r *http.Request) bool {
	return r.ContentLength > 0 || (r.ContentLength < 0 && r.Body != nil && r.Body != http.NoBody)
}

// jsonBody reports whether the body of r has a content type the API takes
// for a state-changing request. own is false for routes added with Handle,
// which also take a body without Content-Type (the cluster's peers send
// JSON without one).
func jsonBody(r *http.Request, route string, own bool) bool {
	if route == "POST /v1/events" && r.Header.Get("Ce-Specversion") != "" {
		return true // binary mode: the body is the event's data
	}
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return !own
	}
	mt, _, err := parseMediaType(ct)
	if err != nil {
		return false
	}
	return mt == "application/json" || strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json")
}
