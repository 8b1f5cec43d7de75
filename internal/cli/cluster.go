package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/api"
	"github.com/semprop/semprop/internal/cluster"
	"github.com/semprop/semprop/internal/config"
	"github.com/semprop/semprop/internal/journal"
	"github.com/semprop/semprop/internal/propagate"
)

// clusterFlags are semprop run's cluster flags.
type clusterFlags struct {
	nodeID    string
	raftAddr  string
	bootstrap bool
	join      string
	apiURL    string
	token     string
	maxBatch  int
	maxDelay  time.Duration
	caFile    string
	certFile  string
	keyFile   string
}

func (f *clusterFlags) register(fl *pflag.FlagSet) {
	fl.StringVar(&f.nodeID, "node-id", "", "run as cluster node `ID` (with --raft-addr and, the first time, --bootstrap or --join)")
	fl.StringVar(&f.raftAddr, "raft-addr", "", "Raft transport address `HOST:PORT` (listened on and advertised)")
	fl.BoolVar(&f.bootstrap, "bootstrap", false, "start a new cluster with this node as its only member")
	fl.StringVar(&f.join, "join", "", "join the cluster through any member's API `URL`")
	fl.StringVar(&f.apiURL, "advertise-api", "", "API URL peers use to reach this node (default: from --listen, or --raft-addr's host when --listen is unspecified)")
	fl.StringVar(&f.token, "cluster-token", "", "admin token sent to peers' APIs (default $SEMPROP_CLUSTER_TOKEN)")
	fl.IntVar(&f.maxBatch, "raft-batch", 0, "events per Raft log entry (default 4096)")
	fl.DurationVar(&f.maxDelay, "raft-batch-delay", 0, "how long a log entry may wait for more events (default 0: take what is queued)")
	fl.StringVar(&f.caFile, "cluster-ca", "", "cluster CA certificate (PEM): peers on the Raft port must present a certificate it issued")
	fl.StringVar(&f.certFile, "cluster-cert", "", "this node's member certificate (PEM), issued by --cluster-ca for client and server auth")
	fl.StringVar(&f.keyFile, "cluster-key", "", "private key of --cluster-cert (PEM)")
}

// secured reports whether cluster credentials were given.
func (f *clusterFlags) secured() bool { return f.caFile != "" || f.certFile != "" || f.keyFile != "" }

func (f *clusterFlags) enabled() bool { return f.nodeID != "" }

func (f *clusterFlags) validate() error {
	if !f.enabled() {
		if f.raftAddr != "" || f.bootstrap || f.join != "" || f.secured() {
			return errors.New("--raft-addr, --bootstrap, --join and --cluster-ca/--cluster-cert/--cluster-key need --node-id")
		}
		return nil
	}
	if f.raftAddr == "" {
		return errors.New("--node-id needs --raft-addr")
	}
	if f.bootstrap && f.join != "" {
		return errors.New("--bootstrap and --join exclude each other")
	}
	if f.secured() && (f.caFile == "" || f.certFile == "" || f.keyFile == "") {
		return errors.New("--cluster-ca, --cluster-cert and --cluster-key go together")
	}
	if !f.secured() && !loopbackHostPort(f.raftAddr) {
		return fmt.Errorf("refusing --raft-addr %s without cluster credentials: anyone who can reach it could append events and depose the leader; "+
			"pass --cluster-ca, --cluster-cert and --cluster-key (see 'semprop cluster certs'), or use a loopback address", f.raftAddr)
	}
	return nil
}

// loopbackHostPort reports whether addr (HOST:PORT) is reachable only from
// this host: a loopback IP or "localhost" (an empty host listens on every
// interface).
func loopbackHostPort(addr string) bool {
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

// clusterRun is the daemon's cluster node, when --node-id is given. A nil
// *clusterRun (no cluster) is valid and does nothing.
type clusterRun struct {
	f     *clusterFlags
	cfg   cluster.Config
	node  *cluster.Node
	clock *event.Clock
	mgr   atomic.Pointer[propagate.Manager] // set once the manager exists
	stop  context.CancelFunc                // stops the readiness watcher
	wg    sync.WaitGroup
}

// newClusterRun prepares the node; it starts in the manager's
// NewSequencer (see apply).
func newClusterRun(f *clusterFlags, cfg *config.Config, j *journal.Journal, apiAddr net.Addr, tlsOn bool, log *slog.Logger) (*clusterRun, error) {
	if f == nil || !f.enabled() {
		return nil, nil
	}
	if err := f.validate(); err != nil {
		return nil, err
	}
	url := f.apiURL
	if url == "" {
		scheme := "http"
		if tlsOn {
			scheme = "https"
		}
		host, port, _ := net.SplitHostPort(apiAddr.String())
		if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
			host, _, _ = net.SplitHostPort(f.raftAddr)
		}
		url = scheme + "://" + net.JoinHostPort(host, port)
	}
	token := f.token
	if token == "" {
		token = os.Getenv("SEMPROP_CLUSTER_TOKEN")
	}
	var tlsClient *tls.Config
	if tlsOn {
		// Peers present the same kind of certificate: trust it, and offer it
		// for mutual TLS.
		tlsClient = &tls.Config{MinVersion: tls.VersionTLS12}
		if pem, err := os.ReadFile(cfg.TLS.Cert); err == nil {
			tlsClient.RootCAs = x509.NewCertPool()
			tlsClient.RootCAs.AppendCertsFromPEM(pem)
		}
		if cert, err := tls.LoadX509KeyPair(cfg.TLS.Cert, cfg.TLS.Key); err == nil {
			tlsClient.Certificates = []tls.Certificate{cert}
		}
	}
	var creds *cluster.Credentials
	if f.secured() {
		var err error
		if creds, err = cluster.LoadCredentials(f.caFile, f.certFile, f.keyFile); err != nil {
			return nil, err
		}
	}
	clock := event.NewClock(0)
	return &clusterRun{f: f, clock: clock, cfg: cluster.Config{
		ID: f.nodeID, RaftAddr: f.raftAddr, APIURL: url, Dir: filepath.Join(cfg.Data, "raft"),
		Journal: j, Clock: clock, Bootstrap: f.bootstrap, Join: strings.TrimRight(f.join, "/"),
		MaxBatch: f.maxBatch, MaxDelay: f.maxDelay, Token: token, TLSClient: tlsClient, Logger: log,
		Credentials: creds,
	}}, nil
}

// apply makes the manager sequence through the cluster.
func (c *clusterRun) apply(o *propagate.Options) {
	if c == nil {
		return
	}
	o.Clock = c.clock
	// Followers decode committed events only when someone listens live.
	c.cfg.DeliverWanted = func() bool {
		m := c.mgr.Load()
		return m == nil || m.Live()
	}
	o.NewSequencer = func(d propagate.Deliver) (propagate.Sequencer, error) {
		n, err := cluster.Open(c.cfg, d)
		if err != nil {
			return nil, err
		}
		c.node = n
		return n, nil
	}
}

// mount adds the /v1/cluster routes and the cluster metrics, and notes
// the manager for DeliverWanted.
func (c *clusterRun) mount(srv *api.Server, reg prometheus.Registerer, m *propagate.Manager) {
	if c == nil {
		return
	}
	c.mgr.Store(m)
	h := c.node.Handler()
	srv.Handle("/v1/cluster", h)
	srv.Handle("/v1/cluster/", h)
	reg.MustRegister(c.node.Collector())
}

// setReady marks srv ready; with a cluster it follows the node's readiness
// (quorum, leader contact, clocks) until ctx ends.
func (c *clusterRun) setReady(ctx context.Context, srv *api.Server) {
	if c == nil {
		srv.SetReady(true, "")
		return
	}
	ctx, c.stop = context.WithCancel(ctx)
	c.wg.Go(func() {
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		last := "?"
		for {
			ok, reason := c.node.Ready()
			if ok {
				reason = ""
			}
			if reason != last {
				srv.SetReady(ok, reason)
				last = reason
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	})
}

// stopReady stops following the node's readiness (before the server is
// marked not ready for shutdown).
func (c *clusterRun) stopReady() {
	if c == nil || c.stop == nil {
		return
	}
	c.stop()
	c.wg.Wait()
}

// close stops the readiness watcher and the node (before the journal).
func (c *clusterRun) close(log *slog.Logger) {
	if c == nil || c.node == nil {
		return
	}
	c.stopReady()
	if err := c.node.Close(); err != nil {
		log.Warn("close cluster node", "err", err)
	}
}
