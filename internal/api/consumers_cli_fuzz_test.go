package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"
)

// FuzzConsumerSpec: decoding a consumer spec never panics; what it accepts
// is in range and decodes to the same spec again; what it refuses is a
// 400-style error with a message.
func FuzzConsumerSpec(f *testing.F) {
	for _, seed := range []string{
		`{"name":"c1"}`,
		`{"name":"c4","typo_field":1}`,
		`{"name":"jobs","type":"job.*","path":"/data/**","filter":"size > 0","ack_wait":"30s","max_deliver":5,"start_seq":7}`,
		`{"name":"d","deny":["**/*.key"],"redact":{"rules":[{"field":"comm","action":"hash","segments":[-1]}]}}`,
		`{"name":"c","max_deliver":-1}`,
		`{"name":"c","ack_wait":"-1s"}`,
		`{"name":"c"} {}`,
		`[1,2]`,
		`{"name":1e999}`,
		``,
	} {
		f.Add([]byte(seed))
	}
	s := New(Options{Logger: quiet})
	f.Fuzz(func(t *testing.T, body []byte) {
		r := httptest.NewRequest(http.MethodPost, "/v1/subscriptions", bytes.NewReader(body))
		spec, aerr := s.decodeSpec(httptest.NewRecorder(), r)
		if aerr != nil {
			if aerr.Error == "" {
				t.Fatalf("decodeSpec(%q): error without a message (field %q)", body, aerr.Field)
			}
			return
		}
		if !consumerName.MatchString(spec.Name) || spec.MaxDeliver < 0 || spec.MaxDeliver > maxMaxDeliver {
			t.Fatalf("decodeSpec(%q) accepted %+v", body, spec)
		}
		if d, aerr := spec.ackWait(); aerr != nil || d < 0 || d > maxAckWait {
			t.Fatalf("decodeSpec(%q) accepted ack_wait %q", body, spec.AckWait)
		}
		again, _ := json.Marshal(spec)
		spec2, aerr := s.decodeSpec(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/v1/subscriptions", bytes.NewReader(again)))
		if aerr != nil || !reflect.DeepEqual(spec, spec2) {
			t.Fatalf("decodeSpec(%q) = %+v; its encoding %s decodes to %+v, %+v", body, spec, again, spec2, aerr)
		}
	})
}
