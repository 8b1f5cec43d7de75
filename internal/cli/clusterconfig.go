package cli

import "github.com/semprop/semprop/internal/daemon"

// config is the daemon's cluster configuration from the flags.
func (f *clusterFlags) config() *daemon.ClusterConfig {
	return &daemon.ClusterConfig{NodeID: f.nodeID, RaftAddr: f.raftAddr, Bootstrap: f.bootstrap, Join: f.join,
		APIURL: f.apiURL, Token: f.token, MaxBatch: f.maxBatch, MaxDelay: f.maxDelay,
		CAFile: f.caFile, CertFile: f.certFile, KeyFile: f.keyFile}
}
