package audit

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// Filter selects records.
type Filter struct {
	Rule  string    // only this rule's records ("" for all)
	Since time.Time // only records at or after this time
	Kind  string    // only this kind ("" for all)
	Limit int       // at most this many, the newest (0: no limit)
}

// Match reports whether rec passes the filter (Limit aside).
func (f Filter) Match(rec *Record) bool {
	return (f.Rule == "" || rec.Rule == f.Rule) && (f.Kind == "" || rec.Kind == f.Kind) &&
		(f.Since.IsZero() || !rec.Time.Before(f.Since))
}

// ParseSince parses a --since value: an RFC 3339 time, or a duration
// such as 1h meaning that long before now.
func ParseSince(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("since %q: want an RFC 3339 time or a duration such as 1h", s)
	}
	return t, nil
}

// List returns the records of the log in dir that pass f, in order.
func List(dir string, f Filter) ([]*Record, error) {
	out, _, _, err := list(dir, f)
	return out, err
}

func list(dir string, f Filter) (out []*Record, head string, count int, err error) {
	head, count, err = scanDir(dir, func(rec *Record) error {
		if f.Match(rec) {
			out = append(out, rec)
			if f.Limit > 0 && len(out) > 2*f.Limit {
				out = append(out[:0], out[len(out)-f.Limit:]...)
			}
		}
		return nil
	})
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[len(out)-f.Limit:]
	}
	return out, head, count, err
}

// DefaultLimit is how many records GET /v1/audit returns without ?limit=.
const DefaultLimit = 1000

// Handler serves GET /v1/audit over the log in dir:
//
//	GET /v1/audit?rule=R&since=1h&kind=done&limit=100
//
// It answers {"records":[...],"head":"…","count":N}: the newest records
// that pass the filter, oldest first (at most limit, default 1000), the
// hash of the last record of the chain and how many records it holds.
// A broken chain is a 500 that names the first broken record. The
// handler only reads the file; it is safe for concurrent use.
func Handler(dir string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "method not allowed"})
			return
		}
		q := r.URL.Query()
		f := Filter{Rule: q.Get("rule"), Kind: q.Get("kind"), Limit: DefaultLimit}
		var err error
		if f.Since, err = ParseSince(q.Get("since"), time.Now()); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error(), "field": "since"})
			return
		}
		if s := q.Get("limit"); s != "" {
			if f.Limit, err = strconv.Atoi(s); err != nil || f.Limit < 1 {
				writeJSON(w, http.StatusBadRequest, map[string]string{"error": "limit: want a positive integer", "field": "limit"})
				return
			}
		}
		out, head, count, err := list(dir, f)
		var be *BrokenError
		if errors.As(err, &be) {
			writeJSON(w, http.StatusInternalServerError, map[string]any{"error": err.Error(), "line": be.Line})
			return
		}
		if err != nil {
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
			return
		}
		if out == nil {
			out = []*Record{}
		}
		writeJSON(w, http.StatusOK, map[string]any{"records": out, "count": count, "head": head})
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}
