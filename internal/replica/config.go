package replica

import (
	"fmt"
	"net/url"
	"os"
	"path"
	"time"
)

// Config is the sync section of the daemon's configuration:
//
//	sync:
//	  name: laptop            # this instance's name (default: the host name)
//	  peers: [https://server:7400]
//	  token: SECRET           # bearer token sent to peers (their API token)
//	  interval: 1s
//
// The zero value of each field takes the default its comment names.
type Config struct {
	// Name names this instance in version vectors: unique among the peers
	// that sync, stable across restarts (default: the host name). Members
	// of one Raft cluster share one name: they see the same events.
	Name string `yaml:"name"`
	// Peers are the base URLs of the instances to sync with (--peer URL).
	Peers []string `yaml:"peers"`
	// Token is the bearer token sent to peers: an API token of theirs with
	// the sync scope (or admin). Empty sends none (peers without tokens, or
	// mTLS).
	Token string `yaml:"token"`
	// Advertise is the URL peers reach this instance at, passed on to
	// others by gossip. Empty: this instance is not advertised.
	Advertise string `yaml:"advertise"`
	// Gossip lists host patterns ("*.corp.example:7400", "10.0.0.*:*";
	// path.Match syntax on HOST:PORT) of peer URLs that this instance
	// accepts from its peers' peer lists. Empty (the default) learns no
	// peers: only configured ones are used. "*" trusts any peer holding
	// the token to point this instance (and its token) anywhere.
	Gossip []string `yaml:"gossip"`
	// Interval between anti-entropy rounds with each peer (default 1s); a
	// local change starts a round sooner.
	Interval time.Duration `yaml:"interval"`
	// Timeout bounds one request to a peer: an exchange or one chunk of a
	// full transfer (default 30s).
	Timeout time.Duration `yaml:"timeout"`
	// FullAfter: a peer that lacks more than this many versions gets the
	// whole state in chunks instead of one delta (default 50,000).
	FullAfter int `yaml:"full_after"`
	// ChunkSize is the number of keys per chunk of a full transfer
	// (default 20,000).
	ChunkSize int `yaml:"chunk_size"`
	// SessionWait is how long a session read waits for this replica to
	// catch up with the session's token before refusing (default 2s).
	SessionWait time.Duration `yaml:"session_wait"`
	// Checkpoint is the interval at which the catalog is saved to the data
	// directory (default 5s); it is also saved at shutdown.
	Checkpoint time.Duration `yaml:"checkpoint"`
	// TLS configures the client side of peer connections: CA to verify
	// peers, Cert and Key to present a client certificate (mTLS).
	TLS TLSConfig `yaml:"tls"`
}

// TLSConfig names PEM files for peer connections.
type TLSConfig struct {
	CA   string `yaml:"ca"`
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// withDefaults returns c with defaults filled in.
func (c Config) withDefaults() Config {
	if c.Name == "" {
		if h, err := os.Hostname(); err == nil && ValidName(h) {
			c.Name = h
		} else {
			c.Name = "semprop"
		}
	}
	if c.Interval <= 0 {
		c.Interval = time.Second
	}
	if c.Timeout <= 0 {
		c.Timeout = 30 * time.Second
	}
	if c.FullAfter <= 0 {
		c.FullAfter = 50000
	}
	if c.ChunkSize <= 0 {
		c.ChunkSize = 20000
	}
	if c.SessionWait <= 0 {
		c.SessionWait = 2 * time.Second
	}
	if c.Checkpoint <= 0 {
		c.Checkpoint = 5 * time.Second
	}
	return c
}

// Validate checks c: a valid name, peer and advertised URLs with http or
// https and a host, well-formed gossip patterns, a complete client
// certificate pair.
func (c Config) Validate() error {
	if c.Name != "" && !ValidName(c.Name) {
		return fmt.Errorf("%w: sync.name %q: want 1-64 letters, digits, '-', '_' or '.'", ErrConfig, c.Name)
	}
	for _, p := range c.Peers {
		if err := checkURL(p); err != nil {
			return fmt.Errorf("%w: sync.peers: %w", ErrConfig, err)
		}
	}
	if c.Advertise != "" {
		if err := checkURL(c.Advertise); err != nil {
			return fmt.Errorf("%w: sync.advertise: %w", ErrConfig, err)
		}
	}
	for _, g := range c.Gossip {
		if _, err := path.Match(g, ""); err != nil {
			return fmt.Errorf("%w: sync.gossip %q: %w", ErrConfig, g, err)
		}
	}
	if (c.TLS.Cert == "") != (c.TLS.Key == "") {
		return fmt.Errorf("%w: sync.tls: cert and key go together", ErrConfig)
	}
	for name, d := range map[string]time.Duration{"interval": c.Interval, "timeout": c.Timeout, "session_wait": c.SessionWait, "checkpoint": c.Checkpoint} {
		if d < 0 {
			return fmt.Errorf("%w: sync.%s is negative", ErrConfig, name)
		}
	}
	if c.FullAfter < 0 || c.ChunkSize < 0 {
		return fmt.Errorf("%w: sync.full_after and sync.chunk_size must not be negative", ErrConfig)
	}
	return nil
}

func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%q: %w", s, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("%q: want http(s)://HOST[:PORT][/PATH]", s)
	}
	return nil
}

// gossipOK reports whether a peer URL learned from another peer may be used.
func (c Config) gossipOK(s string) bool {
	if checkURL(s) != nil {
		return false
	}
	u, _ := url.Parse(s)
	host := u.Host
	if u.Port() == "" {
		host += ":"
	}
	for _, g := range c.Gossip {
		if ok, _ := path.Match(g, host); ok || g == "*" {
			return true
		}
	}
	return false
}
