// Package cluster runs semprop as a Raft-replicated cluster: several nodes
// agree on one total order of events (hashicorp/raft over TCP, raft-wal as
// log and stable store, file snapshots) and each keeps an identical
// journal, so a consumer on any node sees the same events with the same
// seqs. A Node is the propagate.Sequencer of its node's manager.
//
// # Ordering
//
// The leader groups concurrent publishes into one log entry of up to
// Config.MaxBatch events (default 4096), waiting at most Config.MaxDelay
// for a batch to fill (default 0). It keeps at most Config.MaxInflight
// entries on their way (default 4): when they are all being committed, the
// next entry waits for one of them and takes everything that queued
// meanwhile, so a lone publisher never waits and concurrent ones share
// entries in proportion to the load (64 publishers of one event each put
// about 13 events in an entry instead of about 1); the events of one
// Sequence call always stay in one entry, so they get consecutive seqs. Raft commits entries in log order and every node's
// FSM appends each committed batch to its own journal in that order: seqs
// are assigned by the journal (consecutive from 1) and are therefore the
// same event on every node. Entries carry events with Seq 0; the FSM
// splices the seq into the binary encoding (no re-encode). The FSM also
// calls the manager's delivery hook in seq order (decoding the events on
// nodes other than the publisher's, unless Config.DeliverWanted says no one
// listens).
//
// A restarted node replays the log from its last snapshot: batches whose
// records its journal already holds are skipped (a torn journal tail is
// completed), so replays never duplicate.
//
// # Durability and acknowledgement
//
// Sequence returns (the event is acknowledged) only after its entry is
// committed — appended and fsynced by raft-wal on a quorum — and applied
// to the journal of the node that took the publish. The leader sends a new
// entry to its followers while its own raft-wal append and fsync run
// (asyncLog, with hashicorp/raft's dispatch patched in third_party/raft:
// the Raft thesis, section 10.2.1) and counts its own copy towards the
// quorum only once that fsync is done, so a commit still means a majority
// holds the entry durably, but the leader's fsync and a follower's overlap
// instead of running one after the other. A follower writes through
// asyncLog too: it answers an AppendEntries once its entries are durable,
// and takes the next ones in meanwhile (the transport reads ahead on a
// connection and answers in order), so the entries that arrive during one
// fsync share the next instead of being fsynced one after the other. It
// applies what the leader says is committed without waiting for its own
// copy (a majority holds it). The journal is written, with
// the journal's fsync left to the journal's flusher in the background (the
// daemon opens a cluster node's journal with the interval policy, and a
// snapshot fsyncs it before it is persisted), so one fsync (the Raft
// log's, in parallel on the quorum) is on the ack path instead of two in
// series. Nothing acknowledged can be lost by that: the
// Raft log is compacted only behind a snapshot, a snapshot is persisted
// only once its journal position is fsynced in the local journal, and a
// node restarting with a journal that lost unsynced records replays the
// log from its last snapshot, completing the journal (see below). Readers
// of the journal (replay, streams, consumers) see an event once it is
// durable by the journal's policy (with the interval policy the daemon
// gives a cluster node's journal: once written, as it is committed),
// normally well under a millisecond after the ack; a read that must see every acknowledged write uses Node.Sync. A
// write whose
// leader lost leadership before commit fails with ErrNoQuorum and an
// unknown outcome (the events may still commit; their IDs let a retrying
// client de-duplicate); nothing unacknowledged is ever reported as
// acknowledged.
//
// Snapshots do not copy events: a snapshot records the journal position
// reached by the entries it covers (plus membership metadata), and is
// persisted only once that position is fsynced in the local journal. A
// node that restores a snapshot (it fell behind the leader's compacted log,
// or lost unsynced journal records) fetches the journal records it lacks
// from a peer (GET /v1/cluster/journal on its Raft port, the leader
// first), appends them and
// delivers them, then applies the entries after the snapshot. A peer whose
// retention already dropped those records cannot help; keep journal
// retention longer than a node may stay away.
//
// # Forwarding and reads
//
// Any node accepts writes. A follower batches its publishes the same way
// and forwards each batch (POST /v1/cluster/forward) to the leader's Raft
// port, over the same authenticated channel as raft itself (see Security).
// The leader commits it and answers with the first seq and the entry
// index; the follower waits until its own FSM has
// applied that index and its journal holds it durably, then acknowledges.
// A forward that provably never reached the leader (dial failure, "not the
// leader") is retried for up to Config.LeaderWait; any other failure is not
// retried, since that could commit the events twice.
//
// Reads (replay, streams, consumers) are served from the local journal and
// may lag the leader. A read that must reflect every write acknowledged
// before it calls Node.Sync (or ReadIndex + WaitApplied): the leader runs a
// Barrier, which proves it still leads a quorum and that everything
// committed is applied, and answers with its applied index; the reading
// node waits until it has applied that index. Reads done this way are
// linearizable (checked with porcupine in the tests).
//
// # Membership
//
// --bootstrap starts a one-node cluster; --join URL asks any member's API
// (POST /v1/cluster/join, with the cluster token when the API has tokens;
// forwarded to the leader over the Raft port) to add this node as a voter;
// the leader first probes the joiner's Raft port, which proves the joiner
// holds a member certificate there, and its clock. POST /v1/cluster/leave
// {"id"} removes a member: the id is required, an unknown id is refused,
// and a leader asked to remove itself first hands leadership to another
// voter (the only voter cannot leave). A node whose API address changed
// re-announces itself.
// GET /v1/cluster shows the leader, the members, the commit index, each
// member's applied index, lag and clock offset.
//
// # Partitions
//
// A node that cannot reach a leader backed by a quorum knows it: Ready
// reports false with the reason (a candidate with no leader, a follower
// that has not heard from its leader for two heartbeat timeouts, a leader
// that lost its lease steps down), writes fail with ErrNoQuorum (503 at the
// HTTP edge) instead of diverging, and the semprop_cluster_ready metric
// drops to 0. After the partition heals, lagging nodes catch up on their
// own; the Raft transport keeps redialling an unreachable peer every 50ms
// so the leader's first successful connection carries the catch-up instead
// of waiting out raft's exponential replication backoff.
//
// # Security
//
// Members talk to each other only on the Raft port: raft's RPCs and the
// internal HTTP requests (forward, ping, readindex, journal, and joins and
// leaves forwarded to the leader) share it, told apart by their first
// byte. With Config.Credentials every connection on it, in either
// direction, is TLS 1.3 where both ends present a certificate that chains
// to the cluster CA (client and server authentication); a connection that
// does not is closed before either protocol reads a byte, counted
// (semprop_cluster_refused_connections_total) and logged at most once a
// second. Any certificate the CA issued is a member, whatever its name or
// address: use a CA dedicated to the cluster. Without Credentials the port
// is plaintext and Open refuses any RaftAddr but a loopback one. The API
// serves only status, join and leave under /v1/cluster (under the API's
// own authentication); it answers the internal routes 404.
//
// # Clocks
//
// Every event carries an HLC timestamp (event.Clock, shared with the
// manager). Every cluster message carries the sender's HLC (the
// Semprop-Hlc header, and the leader's HLC in every batch entry); the
// receiver merges it, and refuses a message whose HLC is ahead of its own
// physical clock by more than the maximum offset (default 500ms) with
// ErrClockOffset. Every node probes every peer each Config.PingInterval
// with an NTP-style four-timestamp exchange (t0 sent, t1 received, t2
// replied, t3 received): offset = ((t1-t0)+(t2-t3))/2, error bound = RTT/2
// with RTT = (t3-t0)-(t2-t1), keeping the sample with the smallest RTT of
// the last 8. Status and metrics report offset ± RTT/2 per peer (tens of
// microseconds on loopback). A peer beyond the maximum offset is refused:
// it cannot join, the leader refuses its forwarded writes, and a node
// whose leader is refused reports not ready.
//
// # Concurrency
//
// All exported methods of Node are safe for concurrent use. A Node owns
// its goroutines (batcher, completion, probes, announcements, joins,
// forwards) and Close stops and waits for them.
package cluster
