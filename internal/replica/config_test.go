package replica

import (
	"errors"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    Config
		ok   bool
	}{
		{"zero", Config{}, true},
		{"full", Config{Name: "laptop", Peers: []string{"https://server:7878", "http://127.0.0.1:7878/base"}, Advertise: "https://laptop:7878", Gossip: []string{"10.0.0.*:*"}, Interval: time.Second}, true},
		{"bad name", Config{Name: "two words"}, false},
		{"peer without scheme", Config{Peers: []string{"server:7878"}}, false},
		{"peer with credentials", Config{Peers: []string{"https://u:p@server:7878"}}, false},
		{"peer with query", Config{Peers: []string{"https://server:7878/?x=1"}}, false},
		{"bad advertise", Config{Advertise: "ftp://x"}, false},
		{"bad gossip pattern", Config{Gossip: []string{"[x"}}, false},
		{"cert without key", Config{TLS: TLSConfig{Cert: "c.pem"}}, false},
		{"negative interval", Config{Interval: -time.Second}, false},
		{"negative chunk", Config{ChunkSize: -1}, false},
	} {
		err := tc.c.Validate()
		if (err == nil) != tc.ok {
			t.Errorf("%s: Validate() = %v, want ok %v", tc.name, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrConfig) {
			t.Errorf("%s: %v is not ErrConfig", tc.name, err)
		}
	}
	d := Config{}.withDefaults()
	if d.Interval != time.Second || d.FullAfter != 50000 || d.ChunkSize != 20000 || d.Timeout != 30*time.Second || d.Name == "" {
		t.Errorf("defaults = %+v", d)
	}
}

func TestGossipOK(t *testing.T) {
	c := Config{Gossip: []string{"10.0.0.*:7878", "*.corp.example:*"}}
	for u, want := range map[string]bool{
		"https://10.0.0.7:7878":          true,
		"https://10.0.0.7:9999":          false,
		"https://a.corp.example:443":     true,
		"https://evil.example:7878":      false,
		"not a url":                      false,
		"https://user:pw@10.0.0.7:7878/": false,
	} {
		if got := c.gossipOK(u); got != want {
			t.Errorf("gossipOK(%q) = %v, want %v", u, got, want)
		}
	}
	if (Config{}).gossipOK("https://10.0.0.7:7878") {
		t.Error("gossip without patterns accepted a peer")
	}
}

func TestVersionVectorCompare(t *testing.T) {
	for _, tc := range []struct {
		a, b VersionVector
		want Ordering
	}{
		{nil, nil, Equal},
		{VersionVector{"a": 1}, nil, After},
		{nil, VersionVector{"a": 1}, Before},
		{VersionVector{"a": 1, "b": 2}, VersionVector{"a": 1, "b": 2}, Equal},
		{VersionVector{"a": 2, "b": 1}, VersionVector{"a": 1, "b": 2}, Concurrent},
		{VersionVector{"a": 1}, VersionVector{"a": 1, "b": 1}, Before},
	} {
		if got := tc.a.Compare(tc.b); got != tc.want {
			t.Errorf("%v.Compare(%v) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}
