// Package replica keeps a shared, converging view of file state across
// independent semprop instances: a catalog of file entries keyed by (tree
// name, path relative to the tree's root), derived from each instance's
// durable fs.* events and replicated between peers without a coordinator.
//
// The catalog is a state-based CRDT: an observed-remove map of
// multi-value registers ordered by version vectors (State). Each change an
// instance sees is a version named by a dot (instance, journal seq) and
// carrying the key's version vector; a version supersedes those its vector
// covers, and versions with concurrent vectors are all kept as a conflict
// until a change that has seen them all resolves it. Deletions are
// tombstone versions, collected once every known peer has acknowledged
// them. Merge is commutative, associative and idempotent, so deltas may
// be lost, repeated and reordered.
//
// Anti-entropy (Replica.Run) exchanges deltas with each peer over HTTP:
// each side sends the versions the other's summary vector has not seen,
// zstd-compressed, and a peer too far behind pulls the whole state in
// chunks that become visible together. Peers learn further peers from each
// exchange (a gossip of peer lists over the same route).
//
// Reads (GET /v1/state) choose a consistency model per request: eventual
// (the replica as it is, chunk transfers in progress included), causal
// (only complete deltas), session (a version-vector token the client sends
// back: read-your-writes and monotonic reads) and strong (through the
// cluster's linearizable read, refused outside a cluster).
//
// Replica is safe for concurrent use; State and VersionVector are plain
// values.
package replica
