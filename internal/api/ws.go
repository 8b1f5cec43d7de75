package api

import (
	"context"
	"net/http"
	"time"

	"github.com/coder/websocket"

	"github.com/semprop/semprop/event"
)

// ws handles GET /v1/ws: the same stream as /v1/stream over a WebSocket.
// Each text message is one CloudEvents JSON object (with its seq); resume
// with ?after=SEQ, or join a group with ?group=G (and ?name=N). Pings keep the connection alive; on shutdown the server
// closes with status 1001 (going away) and reason "shutdown".
func (s *Server) ws(w http.ResponseWriter, r *http.Request) {
	sel, src, done, ok := s.startStream(w, r)
	if !ok {
		return
	}
	defer done()
	p := principal(r)
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return // Accept wrote the error response
	}
	defer c.CloseNow()
	// The client sends nothing; CloseRead handles its control frames and
	// cancels ctx when it goes away.
	ctx := c.CloseRead(r.Context())
	buf := make([]byte, 0, 1024)
	s.follow(ctx, src, sel, follower{
		send: func(ev *event.Event) error {
			buf = p.Redact(ev).AppendJSON(buf[:0])
			wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			return c.Write(wctx, websocket.MessageText, buf)
		},
		flush: func() error { return nil },
		heartbeat: func() error {
			pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			return c.Ping(pctx)
		},
		end: func(reason string, err error) {
			if err != nil {
				c.Close(websocket.StatusInternalError, truncate(err.Error(), 120))
				return
			}
			c.Close(websocket.StatusGoingAway, reason)
		},
	})
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
