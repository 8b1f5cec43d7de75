// Package config loads semprop's configuration: the embedded defaults
// (defaults.yaml), then an optional YAML file over them. Command-line flags
// are applied over the result by the CLI.
package config

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/semprop/semprop/internal/action"
	"github.com/semprop/semprop/internal/analytics"
	"github.com/semprop/semprop/internal/auth"
	"github.com/semprop/semprop/internal/bytesize"
	"github.com/semprop/semprop/internal/guard"
	"github.com/semprop/semprop/internal/monitor"
	"github.com/semprop/semprop/internal/output"
	"github.com/semprop/semprop/internal/replica"
	"github.com/semprop/semprop/internal/ui"
)

//go:embed defaults.yaml
var defaults []byte

// Defaults returns the embedded default configuration file.
func Defaults() []byte { return bytes.Clone(defaults) }

// Config is semprop's configuration.
type Config struct {
	Data            string          `yaml:"data"`
	Listen          string          `yaml:"listen"`
	Fsync           string          `yaml:"fsync"`
	FsyncInterval   time.Duration   `yaml:"fsync_interval"`
	SegmentSize     Size            `yaml:"segment_size"`
	Retention       Retention       `yaml:"retention"`
	Watch           []Tree          `yaml:"watch"`
	Mount           []Tree          `yaml:"mount"`
	FusePassthrough bool            `yaml:"fuse_passthrough"`
	BridgeWindow    time.Duration   `yaml:"bridge_window"`
	Limits          Limits          `yaml:"limits"`
	Auth            Auth            `yaml:"auth"`
	TLS             TLS             `yaml:"tls"`
	Insecure        bool            `yaml:"insecure"`
	Enrich          Enrich          `yaml:"enrich"`
	Ignore          []string        `yaml:"ignore"`
	Rules           []string        `yaml:"rules"`
	RulesLateness   time.Duration   `yaml:"rules_lateness"`
	RulesMaxRate    int             `yaml:"rules_max_rate"`
	AllowedHosts    []string        `yaml:"allowed_hosts"`
	AllowedOrigins  []string        `yaml:"allowed_origins"`
	Analytics       Analytics       `yaml:"analytics"`
	Guard           guard.Config    `yaml:"guard"`
	DedupWindow     time.Duration   `yaml:"dedup_window"`
	DedupMax        int             `yaml:"dedup_max"`
	Outputs         []output.Config `yaml:"outputs"`
	Monitor         monitor.Config  `yaml:"monitor"`
	Sync            Sync            `yaml:"sync"`
	Actions         action.Config   `yaml:"actions"`
	UI              ui.Config       `yaml:"ui"`
	LogLevel        string          `yaml:"log_level"`
}

// Sync is the sync: section: whether this instance synchronises file
// state with peers (on as soon as peers are listed), and how.
type Sync struct {
	Enabled        bool `yaml:"enabled"`
	replica.Config `yaml:",inline"`
}

// Analytics is the analytics: section: the engine's settings and whether
// it runs.
type Analytics struct {
	Enabled          bool `yaml:"enabled"`
	analytics.Config `yaml:",inline"`
}

// Auth configures bearer tokens (see package auth).
type Auth struct {
	Tokens []auth.TokenSpec `yaml:"tokens"`
}

// TLS configures TLS for the HTTP API.
type TLS struct {
	Cert     string `yaml:"cert"`
	Key      string `yaml:"key"`
	ClientCA string `yaml:"client_ca"`
}

// Retention bounds the journal.
type Retention struct {
	Bytes Size          `yaml:"bytes"`
	Age   time.Duration `yaml:"age"`
}

// Enrich configures what the enrichment layer adds to captured events
// (see docs/enrichment.md); the same for every tree.
type Enrich struct {
	Content     bool          `yaml:"content"`
	Hash        string        `yaml:"hash"`
	Counts      bool          `yaml:"counts"`
	Wait        time.Duration `yaml:"wait"`
	MaxSize     Size          `yaml:"max_size"`
	Workers     int           `yaml:"workers"`
	IndexSize   int           `yaml:"index_size"`
	VCS         string        `yaml:"vcs"`
	VCSQuiet    time.Duration `yaml:"vcs_quiet"`
	IgnoreFiles bool          `yaml:"ignore_files"`
}

// Limits bound HTTP input.
type Limits struct {
	MaxBody         Size          `yaml:"max_body"`
	MaxBatch        int           `yaml:"max_batch"`
	MaxData         Size          `yaml:"max_data"`
	MaxConns        int           `yaml:"max_conns"`
	MaxInflightBody Size          `yaml:"max_inflight_body"`
	BodyTimeout     time.Duration `yaml:"body_timeout"`
	BodyWait        time.Duration `yaml:"body_wait"`
	IdleTimeout     time.Duration `yaml:"idle_timeout"`
}

// Size is a byte count written as a number or with a unit (KiB, MiB, GiB, TiB, KB, MB, GB, TB).
type Size int64

// UnmarshalYAML parses a size.
func (s *Size) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseSize(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*s = v
	return nil
}

// ParseSize parses "64MiB", "1GB", "4096".
func ParseSize(txt string) (Size, error) {
	n, err := bytesize.Parse(txt)
	return Size(n), err
}

// Load returns the defaults overlaid with the file at path ("" = defaults only).
func Load(path string) (*Config, error) {
	var c Config
	if err := decode(defaults, &c); err != nil {
		return nil, fmt.Errorf("config: embedded defaults: %w", err)
	}
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		if err := decode(b, &c); err != nil {
			return nil, fmt.Errorf("config %s: %w", path, err)
		}
	}
	return &c, c.Validate()
}

func decode(b []byte, c *Config) error {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) { // an empty file is fine
		return err
	}
	return nil
}

// Validate checks what needs no parsing beyond the YAML types; errors name
// the key. The values that must be parsed (fsync, mount specs, tokens,
// selectors) are parsed, once, by the daemon's configuration
// (daemon.FromConfig).
func (c *Config) Validate() error {
	if c.Data == "" {
		return errors.New("config: data: must not be empty")
	}
	if c.FsyncInterval <= 0 {
		return errors.New("config: fsync_interval: must be positive")
	}
	if c.SegmentSize < 4096 {
		return errors.New("config: segment_size: must be at least 4KiB")
	}
	if (c.TLS.Cert == "") != (c.TLS.Key == "") {
		return errors.New("config: tls: cert and key go together")
	}
	if c.TLS.ClientCA != "" && c.TLS.Cert == "" {
		return errors.New("config: tls: client_ca needs cert and key")
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("config: log_level: %q is not one of debug, info, warn, error", c.LogLevel)
	}
	return nil
}
