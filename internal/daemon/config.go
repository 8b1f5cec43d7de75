package daemon

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/semprop/semprop/internal/action"
	"github.com/semprop/semprop/internal/analytics"
	"github.com/semprop/semprop/internal/api"
	"github.com/semprop/semprop/internal/auth"
	"github.com/semprop/semprop/internal/config"
	"github.com/semprop/semprop/internal/enrich"
	"github.com/semprop/semprop/internal/guard"
	"github.com/semprop/semprop/internal/journal"
	"github.com/semprop/semprop/internal/monitor"
	"github.com/semprop/semprop/internal/output"
	"github.com/semprop/semprop/internal/propagate"
	"github.com/semprop/semprop/internal/replica"
	"github.com/semprop/semprop/internal/rules"
	"github.com/semprop/semprop/internal/ui"
)

// ErrConfig wraps every configuration error FromConfig reports.
var ErrConfig = errors.New("daemon: invalid configuration")

// Config is the daemon's configuration, parsed and validated once by
// FromConfig: every path is absolute and checked, every policy is a typed
// value. Building a Daemon from it creates nothing on disk.
type Config struct {
	// Data is the data directory (absolute; it need not exist yet).
	Data string
	// Listen is the API address; TLS, when set, serves HTTPS.
	Listen string
	TLS    *tls.Config

	Fsync          journal.FsyncPolicy
	FsyncInterval  time.Duration
	SegmentSize    int64
	RetentionBytes int64
	RetentionAge   time.Duration

	// Watches are the kernel-boundary trees, Mounts the FUSE ones.
	Watches         []Watch
	Mounts          []Mount
	FusePassthrough bool
	BridgeWindow    time.Duration

	// HTTP bounds connections, timeouts and request bodies; AllowedHosts
	// and AllowedOrigins widen the Host and Origin checks.
	HTTP           api.HTTPLimits
	AllowedHosts   []string
	AllowedOrigins []string

	// Auth authenticates API requests (no tokens: everything allowed).
	Auth     *auth.Authenticator
	Tokens   int // how many tokens Auth holds, for the start-up log
	MaxBody  int64
	MaxBatch int
	MaxData  int

	// Enrich is the enrichment of every tree's events (Root, Backing, Dir
	// and Next are set per tree).
	Enrich enrich.Options

	// Rules, when rule files are configured, is the rule set loaded (and
	// validated) from RuleFiles.
	Rules         *rules.Set
	RuleFiles     []string
	RulesLateness time.Duration
	RulesMaxRate  int

	// Host is this machine's name; Source ("semprop://HOST") prefixes the
	// source of every event the daemon makes.
	Host   string
	Source string

	// Analytics configures the analytics engine (nil: off); UI the
	// dashboard.
	Analytics *analytics.Config
	UI        ui.Config
	// Guard is the FUSE guard's configuration; Actions where rule actions
	// may act (roots made absolute, each an existing directory).
	Guard   guard.Config
	Actions action.Config
	// Dedup is idempotent ingest; Outputs forward the durable stream.
	Dedup   propagate.DedupOptions
	Outputs []output.Config
	// Monitor is the health checks' thresholds and the alerting.
	Monitor monitor.Config
	// Sync is the synchronisation of file state with peers (nil: off).
	Sync *replica.Config

	LogLevel string
}

// Watch is one tree watched by the kernel boundary.
type Watch struct {
	Name   string // unique among the trees; the root's last element by default
	Root   string // absolute, symbolic links resolved
	Enrich enrich.Options
}

// Mount is one FUSE mount bridged with the kernel boundary.
type Mount struct {
	Name       string // unique among the trees; the backing's last element by default
	Spec       string // as given, BACKING:MOUNTPOINT, for messages
	Enrich     enrich.Options
	Backing    string // absolute, symbolic links resolved
	Mountpoint string // absolute; created (with a log line) if missing
}

// FromConfig parses and validates cfg. It reads the file system (the
// watched and mounted trees must exist) but changes nothing on it.
func FromConfig(cfg *config.Config) (*Config, error) {
	fail := func(format string, args ...any) (*Config, error) {
		return nil, fmt.Errorf("%w: "+format, append([]any{ErrConfig}, args...)...)
	}
	policy, err := journal.ParseFsyncPolicy(cfg.Fsync)
	if err != nil {
		return fail("fsync: %v", err)
	}
	if _, _, err := net.SplitHostPort(cfg.Listen); err != nil {
		return fail("listen %q: the address is malformed, want HOST:PORT (%v)", cfg.Listen, err)
	}
	authn, err := auth.New(cfg.Auth.Tokens)
	if err != nil {
		return fail("auth: %v", err)
	}
	if !authn.Enabled() && !cfg.Insecure && !loopback(cfg.Listen) {
		return fail("refusing to listen on %s without tokens: configure auth.tokens, listen on loopback, or pass --insecure", cfg.Listen)
	}
	if authn.Enabled() && cfg.TLS.Cert == "" && !cfg.Insecure && !loopback(cfg.Listen) {
		return fail("refusing to send bearer tokens in clear text on %s: configure tls (--tls-cert, --tls-key), listen on loopback, or pass --insecure", cfg.Listen)
	}
	tlsConf, err := serverTLS(cfg.TLS)
	if err != nil {
		return fail("%v", err)
	}
	host, _ := os.Hostname()
	if host == "" {
		host = "localhost"
	}
	data, err := realPathMaybe(cfg.Data)
	if err != nil {
		return fail("data %s: %v", cfg.Data, err)
	}
	c := &Config{
		Data: data, Listen: cfg.Listen, TLS: tlsConf,
		Fsync: policy, FsyncInterval: cfg.FsyncInterval, SegmentSize: int64(cfg.SegmentSize),
		RetentionBytes: int64(cfg.Retention.Bytes), RetentionAge: cfg.Retention.Age,
		FusePassthrough: cfg.FusePassthrough, BridgeWindow: cfg.BridgeWindow,
		Auth: authn, Tokens: len(cfg.Auth.Tokens),
		MaxBody: int64(cfg.Limits.MaxBody), MaxBatch: cfg.Limits.MaxBatch, MaxData: int(cfg.Limits.MaxData),
		Host: host, Source: "semprop://" + host, LogLevel: cfg.LogLevel,
		HTTP: api.HTTPLimits{MaxConns: cfg.Limits.MaxConns, MaxInflightBody: int64(cfg.Limits.MaxInflightBody),
			BodyTimeout: cfg.Limits.BodyTimeout, BodyWait: cfg.Limits.BodyWait, IdleTimeout: cfg.Limits.IdleTimeout},
		AllowedHosts: cfg.AllowedHosts, AllowedOrigins: cfg.AllowedOrigins,
	}
	// A host name to listen on is a name the API answers to.
	if h, _, _ := net.SplitHostPort(cfg.Listen); h != "" && net.ParseIP(h) == nil && h != "localhost" {
		c.AllowedHosts = append(c.AllowedHosts, h)
	}
	vcs := enrich.VCSMode(cfg.Enrich.VCS)
	switch vcs {
	case enrich.VCSPass, enrich.VCSSummarise, enrich.VCSDrop, "":
	default:
		return fail("enrich.vcs: %q is not one of pass, summarise, drop", cfg.Enrich.VCS)
	}
	switch cfg.Enrich.Hash {
	case "", "xxh3", "sha256":
	default:
		return fail("enrich.hash: %q is not one of xxh3, sha256", cfg.Enrich.Hash)
	}
	c.Enrich = enrich.Options{Ignore: cfg.Ignore, NoIgnoreFiles: !cfg.Enrich.IgnoreFiles, NoContent: !cfg.Enrich.Content,
		Hash: cfg.Enrich.Hash, Counts: cfg.Enrich.Counts, Workers: cfg.Enrich.Workers, Wait: cfg.Enrich.Wait,
		MaxSize: int64(cfg.Enrich.MaxSize), IndexSize: cfg.Enrich.IndexSize, VCS: vcs, VCSQuiet: cfg.Enrich.VCSQuiet}
	if len(cfg.Rules) > 0 {
		set, err := rules.Load(cfg.Rules...)
		if err == nil {
			err = action.NewRegistry().Check(set)
		}
		if err != nil {
			return fail("--rules: %v", err)
		}
		c.Rules, c.RuleFiles = set, cfg.Rules
		c.RulesLateness, c.RulesMaxRate = cfg.RulesLateness, cfg.RulesMaxRate
	}
	if cfg.Analytics.Enabled {
		a := cfg.Analytics.Config.Defaults()
		if err := a.Validate(); err != nil {
			return fail("analytics: %v", err)
		}
		c.Analytics = &a
	}
	c.UI = cfg.UI
	if cfg.DedupWindow < 0 || cfg.DedupMax < 0 {
		return fail("dedup_window and dedup_max: must not be negative")
	}
	c.Dedup = propagate.DedupOptions{Window: cfg.DedupWindow, Max: cfg.DedupMax}
	if err := output.ValidateAll(cfg.Outputs); err != nil {
		return fail("outputs: %v", err)
	}
	c.Outputs = cfg.Outputs
	if err := cfg.Monitor.Validate(); err != nil {
		return fail("monitor: %v", err)
	}
	c.Monitor = cfg.Monitor
	if cfg.Sync.Enabled || len(cfg.Sync.Peers) > 0 {
		sc := cfg.Sync.Config
		if err := sc.Validate(); err != nil {
			return fail("sync: %v", err)
		}
		c.Sync = &sc
	}
	c.Guard, c.Actions = cfg.Guard, cfg.Actions
	if err := c.Guard.Validate(); err != nil {
		return fail("guard: %v", err)
	}
	if err := c.Actions.Validate(); err != nil {
		return fail("actions: %v", err)
	}
	c.Actions.Roots = nil
	for _, r := range cfg.Actions.Roots {
		root, err := existingDir(r)
		if err != nil {
			return fail("actions.roots %s: %v", r, err)
		}
		c.Actions.Roots = append(c.Actions.Roots, root)
	}
	if c.Actions.QuarantineDir != "" {
		if c.Actions.QuarantineDir, err = realPathMaybe(c.Actions.QuarantineDir); err != nil {
			return fail("actions.quarantine_dir: %v", err)
		}
	}
	if err := c.UI.Validate(); err != nil {
		return fail("ui: %v", err)
	}
	if st, err := os.Stat(data); err == nil && !st.IsDir() {
		return fail("data %s: not a directory", data)
	}
	var trees []string // every captured tree, to refuse overlaps
	names := map[string]string{}
	named := func(name, dir, spec string) (string, error) {
		if name == "" {
			name = filepath.Base(dir)
		}
		if strings.ContainsAny(name, "/\\") || name == "." || name == ".." {
			return "", fmt.Errorf("tree name %q: a name is one path element", name)
		}
		if other, ok := names[name]; ok {
			return "", fmt.Errorf("tree name %q is taken by %s already: give one of them a name ({name: ..., path: ...})", name, other)
		}
		names[name] = spec
		return name, nil
	}
	for _, tr := range cfg.Watch {
		dir := tr.Path
		if tr.Backing != "" || tr.Mountpoint != "" {
			return fail("watch %s: backing and mountpoint belong to mount entries", dir)
		}
		root, err := existingDir(dir)
		if err != nil {
			return fail("--watch %s: %v", dir, err)
		}
		if within(data, root) {
			return fail("--watch %s: the data directory %s is inside it; the journal's own writes would be captured as events (a feedback loop): use --data outside the watched tree", root, data)
		}
		for _, t := range trees {
			if within(root, t) || within(t, root) {
				return fail("--watch %s: overlaps %s, which is captured already (each file would be reported twice)", root, t)
			}
		}
		name, err := named(tr.Name, root, dir)
		if err != nil {
			return fail("--watch %s: %v", dir, err)
		}
		eo, err := treeEnrich(c.Enrich, tr.Enrich)
		if err != nil {
			return fail("--watch %s: enrich: %v", dir, err)
		}
		trees = append(trees, root)
		c.Watches = append(c.Watches, Watch{Name: name, Root: root, Enrich: eo})
	}
	mountpoints := map[string]bool{}
	for _, tr := range cfg.Mount {
		spec, b, mp := tr.Path, tr.Backing, tr.Mountpoint
		if spec == "" {
			spec = b + ":" + mp
		} else if b != "" || mp != "" {
			return fail("--mount %q: give either path (BACKING:MOUNTPOINT) or backing and mountpoint", spec)
		} else {
			b, mp, _ = strings.Cut(spec, ":")
		}
		if b == "" || mp == "" {
			return fail("--mount %q: want BACKING:MOUNTPOINT", spec)
		}
		backing, err := existingDir(b)
		if err != nil {
			return fail("--mount %s: backing %s: %v", spec, b, err)
		}
		mountpoint, err := realPathMaybe(mp)
		if err != nil {
			return fail("--mount %s: mount point %s: %v", spec, mp, err)
		}
		if within(mountpoint, backing) || within(backing, mountpoint) {
			return fail("--mount %s: the backing tree %s and the mount point %s contain each other (the server would access its own mount)", spec, backing, mountpoint)
		}
		if within(data, backing) || within(data, mountpoint) {
			return fail("--mount %s: the data directory %s is inside it; use --data outside the backing tree and the mount point", spec, data)
		}
		if mountpoints[mountpoint] {
			return fail("--mount %s: the mount point %s is given twice", spec, mountpoint)
		}
		for _, t := range trees {
			if within(backing, t) || within(t, backing) || within(mountpoint, t) {
				return fail("--mount %s: overlaps %s, which is captured already", spec, t)
			}
		}
		name, err := named(tr.Name, backing, spec)
		if err != nil {
			return fail("--mount %s: %v", spec, err)
		}
		eo, err := treeEnrich(c.Enrich, tr.Enrich)
		if err != nil {
			return fail("--mount %s: enrich: %v", spec, err)
		}
		mountpoints[mountpoint] = true
		trees = append(trees, backing)
		c.Mounts = append(c.Mounts, Mount{Name: name, Spec: spec, Backing: backing, Mountpoint: mountpoint, Enrich: eo})
	}
	return c, nil
}

// treeEnrich is the shared enrichment with a tree's overrides applied.
func treeEnrich(shared enrich.Options, t *config.TreeEnrich) (enrich.Options, error) {
	if t == nil {
		return shared, nil
	}
	return shared.WithTree(enrich.TreeOptions{Content: t.Content, Hash: t.Hash, Counts: t.Counts,
		MaxSize: int64(t.MaxSize), Wait: t.Wait, VCS: t.VCS, Ignore: t.Ignore})
}

// existingDir is dir made absolute with symbolic links resolved (the
// kernel reports paths that way); it must be a directory.
func existingDir(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", errors.New("no such directory")
		}
		return "", err
	}
	st, err := os.Stat(real)
	if err != nil {
		return "", err
	}
	if !st.IsDir() {
		return "", errors.New("not a directory")
	}
	return real, nil
}

// realPathMaybe is p made absolute with the symbolic links of its longest
// existing prefix resolved; the rest need not exist. A last element that
// cannot be examined (a dead FUSE mount answers ENOTCONN) is kept as is.
func realPathMaybe(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	var rest []string
	cur := abs
	for {
		if real, err := filepath.EvalSymlinks(cur); err == nil {
			return filepath.Join(append([]string{real}, rest...)...), nil
		}
		parent := filepath.Dir(cur)
		if parent == cur {
			return abs, nil
		}
		rest = append([]string{filepath.Base(cur)}, rest...)
		cur = parent
	}
}

// within reports whether path is root or below it (both absolute, clean).
func within(path, root string) bool {
	rel, err := filepath.Rel(root, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

// loopback reports whether addr (HOST:PORT) only listens on loopback.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// serverTLS builds the API's TLS configuration; nil without a certificate.
func serverTLS(c config.TLS) (*tls.Config, error) {
	if c.Cert == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(c.Cert, c.Key)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	conf := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if c.ClientCA != "" {
		pem, err := os.ReadFile(c.ClientCA)
		if err != nil {
			return nil, fmt.Errorf("tls: client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls: client CA %s: no certificates found", c.ClientCA)
		}
		conf.ClientCAs = pool
		conf.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return conf, nil
}
