package cluster

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestNotInCluster: a daemon without a cluster answers /v1/cluster with a
// 404 that says it is not in a cluster, with a code a client can test.
func TestNotInCluster(t *testing.T) {
	for _, path := range []string{"/v1/cluster", "/v1/cluster/join"} {
		rec := httptest.NewRecorder()
		NotInCluster().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		var body errorBody
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Fatalf("%s: %v: %s", path, err, rec.Body)
		}
		if rec.Code != http.StatusNotFound || body.Code != CodeNotInCluster || !strings.Contains(body.Error, "not in a cluster") {
			t.Errorf("%s = %d %+v, want 404 not_in_cluster saying so", path, rec.Code, body)
		}
	}
}
