package monitor

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"slices"
	"testing"
	"time"
)

// schema is the subset of JSON Schema the Alertmanager document uses.
type schema struct {
	Type                 string             `json:"type"`
	Required             []string           `json:"required"`
	Properties           map[string]*schema `json:"properties"`
	AdditionalProperties json.RawMessage    `json:"additionalProperties"`
	Items                *schema            `json:"items"`
	Format               string             `json:"format"`
}

func loadSchema(t *testing.T, path string) *schema {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var s schema
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	return &s
}

// validate checks v (decoded JSON) against s.
func (s *schema) validate(v any, at string) error {
	switch s.Type {
	case "array":
		a, ok := v.([]any)
		if !ok {
			return fmt.Errorf("%s: want an array", at)
		}
		for i, x := range a {
			if err := s.Items.validate(x, fmt.Sprintf("%s[%d]", at, i)); err != nil {
				return err
			}
		}
	case "object":
		o, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: want an object", at)
		}
		for _, r := range s.Required {
			if _, ok := o[r]; !ok {
				return fmt.Errorf("%s: %s is required", at, r)
			}
		}
		var extra *schema
		if len(s.AdditionalProperties) > 0 && string(s.AdditionalProperties) != "false" && string(s.AdditionalProperties) != "true" {
			extra = &schema{}
			if err := json.Unmarshal(s.AdditionalProperties, extra); err != nil {
				return err
			}
		}
		for k, x := range o {
			ps := s.Properties[k]
			if ps == nil {
				ps = extra
			}
			if ps == nil {
				if string(s.AdditionalProperties) == "false" {
					return fmt.Errorf("%s: unknown property %s", at, k)
				}
				continue
			}
			if err := ps.validate(x, at+"."+k); err != nil {
				return err
			}
		}
	case "string":
		str, ok := v.(string)
		if !ok {
			return fmt.Errorf("%s: want a string", at)
		}
		switch s.Format {
		case "date-time":
			if _, err := time.Parse(time.RFC3339Nano, str); err != nil {
				return fmt.Errorf("%s: not a date-time: %q", at, str)
			}
		case "uri":
			if u, err := url.Parse(str); err != nil || !u.IsAbs() {
				return fmt.Errorf("%s: not an absolute URI: %q", at, str)
			}
		}
	}
	return nil
}

func validateAlertmanagerBody(t *testing.T, body []byte) {
	t.Helper()
	s := loadSchema(t, "testdata/alertmanager-postable-alerts.json")
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("alertmanager body is not JSON: %v", err)
	}
	if err := s.validate(v, "body"); err != nil {
		t.Errorf("alertmanager body does not match the schema: %v\n%s", err, body)
	}
}

func TestPostableAlertsSchema(t *testing.T) {
	now := t0
	alerts := []*Alert{
		{Labels: Labels{"alertname": "A", "severity": "warning"}, Annotations: map[string]string{"summary": "s"}, State: StateFiring, FiredAt: now.Add(-time.Minute), Fingerprint: "x"},
		{Labels: Labels{"alertname": "B"}, State: StateResolved, FiredAt: now.Add(-time.Hour), ResolvedAt: now},
		{Labels: Labels{"alertname": "C"}, State: StatePending, ActiveAt: now},
	}
	pas := postableAlerts(alerts, "http://semprop.example:7878", now)
	b, err := json.Marshal(pas)
	if err != nil {
		t.Fatal(err)
	}
	validateAlertmanagerBody(t, b)
	var names []string
	for _, p := range pas {
		names = append(names, p.Labels["alertname"])
	}
	if !slices.Equal(names, []string{"A", "B"}) {
		t.Errorf("alerts sent = %v, want A and B (pending ones are not sent)", names)
	}
	if !pas[0].EndsAt.Equal(now.Add(4 * alertmanagerResend)) {
		t.Errorf("firing endsAt = %v, want now + 4 resend intervals", pas[0].EndsAt)
	}
	if !pas[1].EndsAt.Equal(now) {
		t.Errorf("resolved endsAt = %v, want the resolution time", pas[1].EndsAt)
	}
	// The validator itself rejects what Alertmanager would reject.
	s := loadSchema(t, "testdata/alertmanager-postable-alerts.json")
	for _, bad := range []string{`{}`, `[{}]`, `[{"labels": {"a": 1}}]`, `[{"labels": {}, "startsAt": "yesterday"}]`, `[{"labels": {}, "generatorURL": "/rel"}]`, `[{"labels": {}, "status": "firing"}]`} {
		var v any
		_ = json.Unmarshal([]byte(bad), &v)
		if s.validate(v, "body") == nil {
			t.Errorf("schema accepts %s", bad)
		}
	}
}
