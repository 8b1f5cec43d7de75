package replica

import "errors"

// Errors of the replica.
var (
	ErrBadVector   = errors.New("replica: malformed version vector")
	ErrBadDelta    = errors.New("replica: malformed delta")
	ErrConfig      = errors.New("replica: invalid configuration")
	ErrNotCluster  = errors.New("replica: strong consistency needs a cluster and this instance is not in one")
	ErrSessionLag  = errors.New("replica: this replica has not yet seen the session's writes")
	ErrConsistency = errors.New("replica: consistency must be eventual, causal, session or strong")
	ErrPeer        = errors.New("replica: peer exchange failed")
)
