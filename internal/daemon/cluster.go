package daemon

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/api"
	"github.com/semprop/semprop/internal/cluster"
	"github.com/semprop/semprop/internal/journal"
	"github.com/semprop/semprop/internal/propagate"
)

// ClusterConfig makes the daemon a node of a Raft cluster.
type ClusterConfig struct {
	NodeID    string
	RaftAddr  string
	Bootstrap bool
	Join      string // any member's API URL
	APIURL    string // advertised; "" derives it from the listener
	Token     string // admin token sent with the join request to the Join URL
	MaxBatch  int
	MaxDelay  time.Duration
	// CAFile, CertFile and KeyFile are the cluster credentials (PEM): the
	// cluster CA, this node's member certificate and its key (all or
	// none). None: the Raft port is plaintext, loopback RaftAddr only.
	CAFile, CertFile, KeyFile string
}

// clusterRun is the daemon's cluster node. A nil *clusterRun (no cluster)
// is valid and does nothing.
type clusterRun struct {
	c     ClusterConfig
	node  *cluster.Node
	clock *event.Clock
	mgr   atomic.Pointer[propagate.Manager] // set once the manager exists
	stop  context.CancelFunc                // stops the readiness watcher
	wg    sync.WaitGroup
}

func newClusterRun(c *ClusterConfig) *clusterRun {
	if c == nil {
		return nil
	}
	return &clusterRun{c: *c, clock: event.NewClock(0)}
}

// prepare makes the manager sequence through the cluster: the node starts
// in the manager's NewSequencer.
func (r *clusterRun) prepare(cfg *Config, j *journal.Journal, apiAddr net.Addr, log *slog.Logger, o *propagate.Options) error {
	if r == nil {
		return nil
	}
	url := r.c.APIURL
	if url == "" {
		scheme := "http"
		if cfg.TLS != nil {
			scheme = "https"
		}
		host, port, _ := net.SplitHostPort(apiAddr.String())
		if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
			host, _, _ = net.SplitHostPort(r.c.RaftAddr)
		}
		url = scheme + "://" + net.JoinHostPort(host, port)
	}
	var tlsClient *tls.Config
	if cfg.TLS != nil && len(cfg.TLS.Certificates) > 0 {
		// Peers present the same kind of certificate: trust it, and offer it
		// for mutual TLS.
		cert := cfg.TLS.Certificates[0]
		tlsClient = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
		if len(cert.Certificate) > 0 {
			if leaf, err := x509.ParseCertificate(cert.Certificate[0]); err == nil {
				tlsClient.RootCAs = x509.NewCertPool()
				tlsClient.RootCAs.AddCert(leaf)
			}
		}
	}
	token := r.c.Token
	if token == "" {
		token = os.Getenv("SEMPROP_CLUSTER_TOKEN")
	}
	var creds *cluster.Credentials
	if r.c.CAFile != "" || r.c.CertFile != "" || r.c.KeyFile != "" {
		var err error
		if creds, err = cluster.LoadCredentials(r.c.CAFile, r.c.CertFile, r.c.KeyFile); err != nil {
			return err
		}
	}
	ccfg := cluster.Config{
		ID: r.c.NodeID, RaftAddr: r.c.RaftAddr, APIURL: url, Dir: filepath.Join(cfg.Data, "raft"),
		Journal: j, Clock: r.clock, Bootstrap: r.c.Bootstrap, Join: strings.TrimRight(r.c.Join, "/"),
		MaxBatch: r.c.MaxBatch, MaxDelay: r.c.MaxDelay, Token: token, TLSClient: tlsClient, Logger: log,
		Credentials: creds,
	}
	o.Clock = r.clock
	// Followers decode committed events when someone listens live or
	// idempotent ingest must remember them.
	ccfg.DeliverWanted = func() bool {
		m := r.mgr.Load()
		return m == nil || m.WantsCommitted()
	}
	o.NewSequencer = func(d propagate.Deliver) (propagate.Sequencer, error) {
		n, err := cluster.Open(ccfg, d)
		if err != nil {
			return nil, err
		}
		r.node = n
		return n, nil
	}
	return nil
}

// mount adds the /v1/cluster routes and the cluster metrics, and notes
// the manager for DeliverWanted.
func (r *clusterRun) mount(srv *api.Server, reg prometheus.Registerer, m *propagate.Manager) {
	if r == nil {
		// Say so, instead of "no route": cluster commands name the cause.
		srv.Handle("/v1/cluster", cluster.NotInCluster())
		srv.Handle("/v1/cluster/", cluster.NotInCluster())
		return
	}
	r.mgr.Store(m)
	h := r.node.Handler()
	srv.Handle("/v1/cluster", h)
	srv.Handle("/v1/cluster/", h)
	reg.MustRegister(r.node.Collector())
}

// setReady marks srv ready; with a cluster it follows the node's readiness
// (quorum, leader contact, clocks) until ctx ends.
func (r *clusterRun) setReady(ctx context.Context, srv *api.Server) {
	if r == nil {
		srv.SetReady(true, "")
		return
	}
	ctx, r.stop = context.WithCancel(ctx)
	r.wg.Go(func() {
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		last := "?"
		for {
			ok, reason := r.node.Ready()
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
func (r *clusterRun) stopReady() {
	if r == nil || r.stop == nil {
		return
	}
	r.stop()
	r.wg.Wait()
}

// close stops the readiness watcher and the node (before the journal).
func (r *clusterRun) close(log *slog.Logger) {
	if r == nil || r.node == nil {
		return
	}
	r.stopReady()
	if err := r.node.Close(); err != nil {
		log.Warn("close cluster node", "err", err)
	}
}
