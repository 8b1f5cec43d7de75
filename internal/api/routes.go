package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

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
// them; all are validated before the table is swapped, atomically. A spec
// without targets is a group's route (its targets are the group's live
// members). Errors name the field at fault: a JSON field ("targets",
// "[1].name"), "offset N" for malformed JSON, or the selector part.
func (s *Server) addRoutes(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRoutesBody))
	if err != nil {
		if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, "", fmt.Sprintf("body exceeds %d bytes", mbe.Limit))
			return
		}
		writeError(w, http.StatusBadRequest, "", "read body: "+err.Error())
		return
	}
	var raws []json.RawMessage
	prefix := func(int) string { return "" }
	if firstNonSpace(body) == '[' {
		if err := json.Unmarshal(body, &raws); err != nil {
			writeJSON(w, http.StatusBadRequest, routeJSONError(err, ""))
			return
		}
		prefix = func(i int) string { return "[" + strconv.Itoa(i) + "]." }
	} else {
		raws = []json.RawMessage{body}
	}
	specs := make([]route.Spec, len(raws))
	for i, raw := range raws {
		if err := json.Unmarshal(raw, &specs[i]); err != nil {
			writeJSON(w, http.StatusBadRequest, routeJSONError(err, prefix(i)))
			return
		}
	}
	if err := s.m.AddRoutes(specs...); err != nil {
		field := "route"
		switch {
		case errors.Is(err, propagate.ErrNoSubscription):
			field = "targets"
		case route.SelectorPart(err) != "":
			field = route.SelectorPart(err)
		}
		writeError(w, http.StatusBadRequest, field, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"routes": s.m.Routes()})
}

// routeJSONError names what is wrong in a route spec's JSON: the field
// (after prefix, "[i]." in an array), or "offset N" of malformed JSON.
func routeJSONError(err error, prefix string) *apiError {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return &apiError{Field: fmt.Sprintf("offset %d", se.Offset), Error: fmt.Sprintf("malformed JSON at offset %d: %v", se.Offset, err)}
	}
	e := jsonFieldError(err)
	if e.Field != "" {
		e.Field = prefix + e.Field
		e.Error = prefix + e.Error
	}
	return e
}

// deleteRoute handles DELETE /v1/routes/{name}.
func (s *Server) deleteRoute(w http.ResponseWriter, r *http.Request) {
	if s.m.RemoveRoutes(r.PathValue("name")) == 0 {
		writeError(w, http.StatusNotFound, "name", "no dynamic route "+r.PathValue("name"))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
