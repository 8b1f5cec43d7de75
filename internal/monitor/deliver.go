package monitor

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/semprop/semprop/event"
)

// Event types of alert notifications published into the stream.
const (
	TypeFiring   = "semprop.alert.firing"
	TypeResolved = "semprop.alert.resolved"
)

// Publisher publishes events into the stream (propagate.Manager's
// Publish).
type Publisher interface {
	Publish(ctx context.Context, ev *event.Event) (uint64, error)
}

// sink delivers notifications.
type sink interface {
	name() string
	notify(ctx context.Context, n Notification) error
}

// eventSink publishes one event per alert of a notification: type
// semprop.alert.firing or semprop.alert.resolved, subject the alert
// name, data the alert as JSON, attributes alertname, severity and
// fingerprint.
type eventSink struct {
	pub    Publisher
	source string
}

func (s *eventSink) name() string { return "events" }

func (s *eventSink) notify(ctx context.Context, n Notification) error {
	for _, a := range n.Alerts {
		ev := alertEvent(a, s.source, n.Time)
		if _, err := s.pub.Publish(ctx, ev); err != nil {
			return fmt.Errorf("%w: publish %s: %w", ErrDelivery, a.Name(), err)
		}
	}
	return nil
}

func alertEvent(a *Alert, source string, now time.Time) *event.Event {
	ev := &event.Event{Type: TypeFiring, Source: source, Subject: a.Name(), Time: now, DataContentType: "application/json", Priority: event.PriorityHigh}
	if a.State == StateResolved {
		ev.Type = TypeResolved
		ev.Priority = event.PriorityNormal
	}
	ev.SetAttr("alertname", a.Name())
	if sev := a.Labels["severity"]; sev != "" {
		ev.SetAttr("severity", sev)
	}
	ev.SetAttr("fingerprint", a.Fingerprint)
	ev.Data, _ = json.Marshal(a)
	return ev
}

// WebhookConfig is one webhook receiver: semprop POSTs each notification
// as JSON in Alertmanager's webhook format (version "4").
type WebhookConfig struct {
	URL string `yaml:"url" json:"url"`
	// Timeout bounds one attempt (default 10s); a failed delivery is
	// tried three times in all.
	Timeout Duration `yaml:"timeout,omitempty" json:"timeout,omitempty"`
	// BearerToken, if set, is sent as Authorization: Bearer.
	BearerToken string `yaml:"bearer_token,omitempty" json:"-"`
}

// WebhookMessage is the body of a webhook notification, as Alertmanager's
// webhook receiver sends it.
type WebhookMessage struct {
	Version           string            `json:"version"`
	GroupKey          string            `json:"groupKey"`
	Status            string            `json:"status"`
	Receiver          string            `json:"receiver"`
	GroupLabels       map[string]string `json:"groupLabels"`
	CommonLabels      map[string]string `json:"commonLabels"`
	CommonAnnotations map[string]string `json:"commonAnnotations"`
	ExternalURL       string            `json:"externalURL"`
	Alerts            []WebhookAlert    `json:"alerts"`
}

// WebhookAlert is one alert of a WebhookMessage.
type WebhookAlert struct {
	Status       string            `json:"status"`
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL"`
	Fingerprint  string            `json:"fingerprint"`
}

type webhookSink struct {
	cfg         WebhookConfig
	hc          *http.Client
	externalURL string
}

func (s *webhookSink) name() string { return "webhook" }

func (s *webhookSink) notify(ctx context.Context, n Notification) error {
	msg := WebhookMessage{Version: "4", GroupKey: n.GroupKey, Status: n.Status, Receiver: "semprop", GroupLabels: n.GroupLabels,
		ExternalURL: s.externalURL, CommonLabels: map[string]string{}, CommonAnnotations: map[string]string{}}
	for i, a := range n.Alerts {
		wa := WebhookAlert{Status: a.State, Labels: a.Labels, Annotations: a.Annotations, StartsAt: startsAt(a), EndsAt: a.ResolvedAt,
			GeneratorURL: generatorURL(s.externalURL, a), Fingerprint: a.Fingerprint}
		if wa.Annotations == nil {
			wa.Annotations = map[string]string{}
		}
		msg.Alerts = append(msg.Alerts, wa)
		if i == 0 {
			maps.Copy(msg.CommonLabels, a.Labels)
			maps.Copy(msg.CommonAnnotations, a.Annotations)
			continue
		}
		maps.DeleteFunc(msg.CommonLabels, func(k, v string) bool { return a.Labels[k] != v })
		maps.DeleteFunc(msg.CommonAnnotations, func(k, v string) bool { return a.Annotations[k] != v })
	}
	body, err := json.Marshal(msg)
	if err != nil {
		return err
	}
	return postRetry(ctx, s.hc, s.cfg.URL, s.cfg.BearerToken, time.Duration(s.cfg.Timeout), body)
}

func startsAt(a *Alert) time.Time {
	if !a.FiredAt.IsZero() {
		return a.FiredAt
	}
	return a.ActiveAt
}

func generatorURL(base string, a *Alert) string {
	if base == "" {
		return ""
	}
	return strings.TrimRight(base, "/") + "/v1/alerts?" + url.Values{"alertname": {a.Name()}}.Encode()
}

// postRetry POSTs body as JSON, three attempts with a growing pause; 4xx
// answers other than 429 are not retried.
func postRetry(ctx context.Context, hc *http.Client, u, token string, timeout time.Duration, body []byte) error {
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	var last error
	for attempt := range 3 {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Duration(attempt) * 500 * time.Millisecond):
			}
		}
		actx, cancel := context.WithTimeout(ctx, timeout)
		req, err := http.NewRequestWithContext(actx, http.MethodPost, u, bytes.NewReader(body))
		if err != nil {
			cancel()
			return fmt.Errorf("%w: %w", ErrDelivery, err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("User-Agent", "semprop-monitor")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := hc.Do(req)
		if err != nil {
			cancel()
			last = err
			continue
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		cancel()
		if resp.StatusCode/100 == 2 {
			return nil
		}
		last = fmt.Errorf("status %d", resp.StatusCode)
		if resp.StatusCode/100 == 4 && resp.StatusCode != http.StatusTooManyRequests {
			break
		}
	}
	return fmt.Errorf("%w: %s: %w", ErrDelivery, redactURL(u), last)
}

// redactURL drops user info and the query from u for logs and errors.
func redactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(bad url)"
	}
	p.User, p.RawQuery = nil, ""
	return p.String()
}

// AlertmanagerConfig points semprop at an Alertmanager: it POSTs its
// alerts to URL/api/v2/alerts (URL is the Alertmanager's base, e.g.
// http://alertmanager:9093).
type AlertmanagerConfig struct {
	URL         string   `yaml:"url" json:"url"`
	Timeout     Duration `yaml:"timeout,omitempty" json:"timeout,omitempty"`
	BearerToken string   `yaml:"bearer_token,omitempty" json:"-"`
}

// PostableAlert is one alert in Alertmanager's API v2 format (the
// postableAlert of its OpenAPI document).
type PostableAlert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	StartsAt     time.Time         `json:"startsAt,omitzero"`
	EndsAt       time.Time         `json:"endsAt,omitzero"`
	GeneratorURL string            `json:"generatorURL,omitempty"`
}

// alertmanagerResend is how often firing alerts are sent again to an
// Alertmanager; each is sent with endsAt four of these ahead, so the
// Alertmanager resolves it on its own if semprop stops.
const alertmanagerResend = time.Minute

// postableAlerts renders alerts (firing and recently resolved) for an
// Alertmanager at now. Alertmanager does its own grouping, silencing and
// inhibition, so every alert goes, muted or not.
func postableAlerts(alerts []*Alert, externalURL string, now time.Time) []PostableAlert {
	out := make([]PostableAlert, 0, len(alerts))
	for _, a := range alerts {
		if a.State == StatePending {
			continue
		}
		pa := PostableAlert{Labels: a.Labels, Annotations: a.Annotations, StartsAt: startsAt(a).UTC(), GeneratorURL: generatorURL(externalURL, a)}
		switch {
		case a.State == StateResolved:
			pa.EndsAt = a.ResolvedAt.UTC()
		case !a.EndsAt.IsZero():
			pa.EndsAt = a.EndsAt.UTC()
		default:
			pa.EndsAt = now.Add(4 * alertmanagerResend).UTC()
		}
		out = append(out, pa)
	}
	slices.SortFunc(out, func(a, b PostableAlert) int { return strings.Compare(a.Labels["alertname"], b.Labels["alertname"]) })
	return out
}
