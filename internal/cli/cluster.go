package cli

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/spf13/pflag"
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
	fl.StringVar(&f.token, "cluster-token", "", "admin token sent with the join request to the --join member's API (default $SEMPROP_CLUSTER_TOKEN)")
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
