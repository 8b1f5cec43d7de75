package daemon

import (
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// newHTTPServer is the API's http.Server.
func newHTTPServer(h http.Handler, cfg Config, log *slog.Logger) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
}

func tlsListener(ln net.Listener, conf *tls.Config) net.Listener { return tls.NewListener(ln, conf) }
