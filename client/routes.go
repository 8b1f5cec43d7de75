package client

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
)

// Route is a dynamic routing rule: events its selector matches go to the
// named live subscriptions, all of them (broadcast) or one member of the
// group by strategy (round-robin, weighted, key-hash, failover). A route
// without Targets is the route of the group of the same name: its targets
// are the group's live members (StreamGroup).
type Route struct {
	Name   string `json:"name"`
	Type   string `json:"type,omitempty"`
	Path   string `json:"path,omitempty"`
	Filter string `json:"filter,omitempty"`
	// Where is a further filter in the CloudEvents dialects, as JSON
	// ({"prefix":{"subject":"/data/"}}).
	Where json.RawMessage `json:"where,omitempty"`
	// Deny lists path patterns whose events never take this route.
	Deny []string `json:"deny,omitempty"`
	// Redact hides fields from this route's targets, as JSON
	// ({"rules":[{"field":"comm","action":"drop"}]}).
	Redact   json.RawMessage `json:"redact,omitempty"`
	Targets  []string        `json:"targets,omitempty"`
	Strategy string          `json:"strategy,omitempty"`
	Weights  []int           `json:"weights,omitempty"`
	Breakers bool            `json:"breakers,omitempty"`
}

// RouteInfo describes a route of the server's routing table.
type RouteInfo struct {
	Name     string          `json:"name"`
	Selector json.RawMessage `json:"selector"`
	Filter   string          `json:"filter,omitempty"`
	Strategy string          `json:"strategy"`
	Targets  int             `json:"targets"`
	// Members names the targets: subscriptions' names (or sub-N ids).
	Members []string `json:"members,omitempty"`
	// Kind is "route" (added with AddRoutes), "group" (a group's route,
	// Members being its live members) or "subscription" (a live
	// subscription's own route).
	Kind string `json:"kind,omitempty"`
}

// Routes lists the routing table (admin).
func (c *Client) Routes(ctx context.Context) ([]RouteInfo, error) {
	resp, err := c.do(ctx, http.MethodGet, "/v1/routes", nil, "", nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out struct {
		Routes []RouteInfo `json:"routes"`
	}
	err = json.NewDecoder(resp.Body).Decode(&out)
	return out.Routes, err
}

// AddRoutes adds or replaces dynamic routes by name (admin); all are
// validated before any takes effect.
func (c *Client) AddRoutes(ctx context.Context, routes ...Route) error {
	body, _ := json.Marshal(routes)
	resp, err := c.do(ctx, http.MethodPost, "/v1/routes", body, "application/json", nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// RemoveRoute removes a dynamic route (admin).
func (c *Client) RemoveRoute(ctx context.Context, name string) error {
	resp, err := c.do(ctx, http.MethodDelete, "/v1/routes/"+url.PathEscape(name), nil, "", nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}
