package daemon

import (
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"

	"github.com/semprop/semprop/internal/api"
)

// newHTTPServer is the API's http.Server: timeouts and a rate-limited
// error log (failed TLS handshakes are not logged one by one).
func newHTTPServer(h http.Handler, cfg Config, log *slog.Logger) *http.Server {
	return api.NewHTTPServer(h, cfg.HTTP, log)
}

func tlsListener(ln net.Listener, conf *tls.Config) net.Listener { return tls.NewListener(ln, conf) }
