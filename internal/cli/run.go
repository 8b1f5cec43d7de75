package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/semprop/semprop/internal/config"
	"github.com/semprop/semprop/internal/daemon"
)

type runFlags struct {
	config      string
	data        string
	listen      string
	watch       []string
	mount       []string
	rules       []string
	peers       []string
	fsync       string
	fsyncEvery  time.Duration
	passthrough string
	logLevel    string
	tlsCert     string
	tlsKey      string
	tlsClientCA string
	insecure    bool
	cluster     clusterFlags
}

func newRunCmd() *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the semprop daemon",
		Long: `Run the daemon: open the journal, serve the HTTP API, and capture file-system
events from --watch directories (kernel boundary) and --mount BACKING:MOUNTPOINT
FUSE mounts (FUSE and kernel boundaries, bridged).

With no flags it runs on the embedded defaults: data in ./semprop-data, HTTP on
127.0.0.1:7878, fsync always. A --config YAML file overrides the defaults
(see 'semprop run --print-defaults'); flags override the file.

SIGINT or SIGTERM shut down gracefully: intake stops, streams end, what is
buffered is flushed and fsynced, and the process exits 0.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if pd, _ := cmd.Flags().GetBool("print-defaults"); pd {
				_, err := cmd.OutOrStdout().Write(config.Defaults())
				return err
			}
			cfg, err := f.load(cmd)
			if err != nil {
				return err
			}
			if err := f.cluster.validate(); err != nil {
				return err
			}
			if cc, _ := cmd.Flags().GetBool("check-config"); cc {
				if _, err := daemon.FromConfig(cfg); err != nil {
					return err
				}
				return printConfig(cmd.OutOrStdout(), cfg)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runDaemon(ctx, cfg, &f.cluster, cmd.ErrOrStderr())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.config, "config", "", "YAML configuration file (overrides the embedded defaults)")
	fl.StringVar(&f.data, "data", "", "data directory for the journal and consumer cursors (default ./semprop-data)")
	fl.StringVar(&f.listen, "listen", "", "HTTP API address (default 127.0.0.1:7878)")
	fl.StringArrayVar(&f.peers, "peer", nil, "sync file state with the semprop instance at `URL` (repeatable; docs/sync.md)")
	fl.StringArrayVar(&f.rules, "rules", nil, "rule `FILE_OR_DIR` (repeatable): patterns over the event stream, see 'semprop rules lint'")
	fl.StringArrayVar(&f.watch, "watch", nil, "watch `DIR` with the kernel boundary (repeatable)")
	fl.StringArrayVar(&f.mount, "mount", nil, "mount a FUSE loopback of BACKING at MOUNTPOINT, bridged with the kernel boundary (`BACKING:MOUNTPOINT`, repeatable)")
	fl.StringVar(&f.fsync, "fsync", "", "journal durability: always (ack after fsync, group commit), interval (ack after write, fsync every --fsync-interval), never (default always)")
	fl.DurationVar(&f.fsyncEvery, "fsync-interval", 0, "fsync period for --fsync interval (default 10ms)")
	fl.StringVar(&f.passthrough, "fuse-passthrough", "", "FUSE passthrough for file data: on (fast; writes seen by the kernel boundary) or off (default on)")
	fl.StringVar(&f.logLevel, "log-level", "", "debug, info, warn or error (default info)")
	fl.StringVar(&f.tlsCert, "tls-cert", "", "serve the API over TLS with this certificate (PEM)")
	fl.StringVar(&f.tlsKey, "tls-key", "", "private key of --tls-cert (PEM)")
	fl.StringVar(&f.tlsClientCA, "tls-client-ca", "", "require client certificates signed by this CA (mutual TLS)")
	fl.BoolVar(&f.insecure, "insecure", false, "allow a non-loopback --listen address without tokens (anyone who can connect may do anything)")
	fl.Bool("print-defaults", false, "print the embedded default configuration and exit")
	fl.Bool("check-config", false, "validate the configuration (file and flags merged), print the effective one with secrets masked, and exit")
	f.cluster.register(fl)
	return cmd
}

// load reads the config and applies the flags that were given.
func (f *runFlags) load(cmd *cobra.Command) (*config.Config, error) {
	cfg, err := config.Load(f.config)
	if err != nil {
		return nil, err
	}
	fl := cmd.Flags()
	if fl.Changed("data") {
		cfg.Data = f.data
	}
	if fl.Changed("listen") {
		cfg.Listen = f.listen
	}
	if fl.Changed("watch") {
		cfg.Watch = config.Trees(f.watch...)
	}
	if fl.Changed("mount") {
		cfg.Mount = config.Trees(f.mount...)
	}
	if fl.Changed("peer") {
		cfg.Sync.Peers = append(cfg.Sync.Peers, f.peers...)
	}
	if fl.Changed("rules") {
		cfg.Rules = f.rules
	}
	if fl.Changed("fsync") {
		cfg.Fsync = f.fsync
	}
	if fl.Changed("fsync-interval") {
		cfg.FsyncInterval = f.fsyncEvery
	}
	if fl.Changed("fuse-passthrough") {
		switch f.passthrough {
		case "on", "true":
			cfg.FusePassthrough = true
		case "off", "false":
			cfg.FusePassthrough = false
		default:
			return nil, fmt.Errorf("--fuse-passthrough: %q: want on or off", f.passthrough)
		}
	}
	if fl.Changed("log-level") {
		cfg.LogLevel = f.logLevel
	}
	if fl.Changed("tls-cert") {
		cfg.TLS.Cert = f.tlsCert
	}
	if fl.Changed("tls-key") {
		cfg.TLS.Key = f.tlsKey
	}
	if fl.Changed("tls-client-ca") {
		cfg.TLS.ClientCA = f.tlsClientCA
	}
	if fl.Changed("insecure") {
		cfg.Insecure = f.insecure
	}
	return cfg, cfg.Validate()
}

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l}))
}

// runDaemon parses cfg once into the daemon's typed configuration and runs
// the daemon until ctx is done.
func runDaemon(ctx context.Context, cfg *config.Config, cf *clusterFlags, logw io.Writer) error {
	dcfg, err := daemon.FromConfig(cfg)
	if err != nil {
		return err
	}
	d := daemon.New(dcfg, newLogger(logw, cfg.LogLevel))
	if cf.enabled() {
		d.SetCluster(cf.config())
	}
	return d.Run(ctx)
}

// printConfig prints cfg as YAML with every secret masked.
func printConfig(w io.Writer, cfg *config.Config) error {
	c := *cfg
	c.Auth.Tokens = slices.Clone(cfg.Auth.Tokens)
	for i := range c.Auth.Tokens {
		if c.Auth.Tokens[i].Token != "" {
			c.Auth.Tokens[i].Token = "<masked>"
		}
		if c.Auth.Tokens[i].SHA256 != "" {
			c.Auth.Tokens[i].SHA256 = "<masked>"
		}
	}
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	if err := enc.Encode(&c); err != nil {
		return err
	}
	return enc.Close()
}
