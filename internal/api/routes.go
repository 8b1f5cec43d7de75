package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/semprop/semprop/internal/propagate"
	"github.com/semprop/semprop/internal/route"
)

// listRoutes handles GET /v1/routes: the routing table, dynamic routes and
// live subscriptions' own routes (sub-N).
func (s *Server) listRoutes(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"routes": s.m.Routes()})
}

// maxRoutesBody bounds the body of POST /v1/routes.
const maxRoutesBody = 1 << 20

// addRoutes handles POST /v1/routes with one route spec or an array of
// them; all are validated before the table is swapped, atomically.
func (s *Server) addRoutes(w http.ResponseWriter, r *http.Request) {
	var raw json.RawMessage
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxRoutesBody)).Decode(&raw); err != nil {
		if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, "", fmt.Sprintf("body exceeds %d bytes", mbe.Limit))
			return
		}
		writeError(w, http.StatusBadRequest, "", "malformed JSON: "+err.Error())
		return
	}
	var specs []route.Spec
	if firstNonSpace(raw) == '[' {
		if err := json.Unmarshal(raw, &specs); err != nil {
			writeError(w, http.StatusBadRequest, "", err.Error())
			return
		}
	} else {
		var one route.Spec
		if err := json.Unmarshal(raw, &one); err != nil {
			writeError(w, http.StatusBadRequest, "", err.Error())
			return
		}
		specs = []route.Spec{one}
	}
	if err := s.m.AddRoutes(specs...); err != nil {
		field := "route"
		if errors.Is(err, propagate.ErrNoSubscription) {
			field = "targets"
		}
		writeError(w, http.StatusBadRequest, field, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"routes": s.m.Routes()})
}

// deleteRoute handles DELETE /v1/routes/{name}.
func (s *Server) deleteRoute(w http.ResponseWriter, r *http.Request) {
	if s.m.RemoveRoutes(r.PathValue("name")) == 0 {
		writeError(w, http.StatusNotFound, "name", "no dynamic route "+r.PathValue("name"))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
