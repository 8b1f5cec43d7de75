// Package procinfo keeps the identity of processes (comm, exe, effective
// uid and gid) learnt while they are alive, so that an operation read from
// a kernel queue after its process exited is still attributed to it.
//
// # Source
//
// Start subscribes to the kernel's process connector (netlink
// NETLINK_CONNECTOR, group CN_IDX_PROC; root in the initial user and pid
// namespaces). On each exec the process's /proc/PID/{status,stat,exe} is
// read at once — a process that lives a millisecond is almost always still
// there — and a fork gives the child its parent's identity without reading
// anything. A comm change (prctl PR_SET_NAME) and a uid or gid change update
// the identity from the event itself. An exit marks the identity ended; it
// is kept for DefaultRetention, then forgotten. At most DefaultMaxEntries
// processes are kept (least recently used first out), and at most four
// identities per pid. A process that was already running when the cache
// started is read from /proc at its first lookup.
//
// # Which process
//
// Every identity has the CLOCK_MONOTONIC time of the event that began it
// (the connector's timestamp) and of its exit. A lookup says when the
// operation happened, as a Window: a reader of a kernel queue knows that
// its record was queued after the last time it found the queue empty and
// before its read returned. The identity chosen is the newest that existed
// within the window; if identities of two different processes (the pid was
// reused within the window) or of a process seen only at its exit overlap
// it, there is no answer (Stats.Unresolved) rather than a guess. /proc is
// read at lookup only for a process that certainly held the pid throughout
// the window (it started before it, by its start time), so pid reuse never
// attributes an operation to the wrong process. When an exec or a rename
// falls within the window, the operation is attributed to the identity
// after it.
//
// Before it answers, a lookup makes sure the connector events queued before
// the window's end have been applied, so a fork or exec that came before the
// operation is always known: when the listener has not drained the socket
// since, one poll(2) tells whether anything is pending, and if so the
// lookup waits for the listener (at most 100ms; Stats.SlowCatchUps). A
// lookup that stopped waiting does not trust the cache, which may still
// hold the identity from before an exec (a shell's, for the program it
// ran): it reads /proc as for a pid it does not know, and answers nothing
// when the process is gone.
//
// # Timing
//
// The listener has an OS thread of its own with real-time priority
// (SCHED_FIFO 1; nice -10 where that is refused), so that it reads the
// /proc files of a new program within microseconds of its exec, before a
// process that lives a millisecond is gone. Its work per event is small
// and bounded (an exec costs three small /proc reads, about 20µs; a fork
// or exit a map update), and the kernel's real-time throttling applies.
// A Go thread also needs one of the runtime's Ps to run: on a machine
// whose CPUs are all busy the listener may still be late, and the exec
// is then counted in Stats.ExecLate.
//
// # Losses
//
// When the kernel drops connector messages (ENOBUFS: the listener fell more
// than its 8 MiB socket buffer behind), the cache forgets everything and
// learns afresh (Stats.Lost); meanwhile lookups read /proc as above.
//
// An exec whose process was gone (or a zombie without its exe) before
// /proc could be read is counted in Stats.ExecLate. Its identity then
// comes from the exec records (Stats.ExecRecords): a second fanotify group
// asks for FAN_OPEN_EXEC on the file systems that hold programs ("/",
// "/usr", "/bin", "/sbin", "/usr/local", "/opt"), and the kernel queues,
// during the execve, a record with the file exec'd, which the listener
// reads (before the connector's events) whether or not the process still
// exists. exe is the program (a script's interpreter; the dynamic loader
// is skipped), comm the base name of the file exec'd cut to 15 bytes (a
// program exec'd through a symbolic link is named after the file, not the
// link: the one case where it differs from the kernel's comm), and the
// uid and gid are those of the process before its exec unless the file is
// set-user-ID or set-group-ID (then they are unknown). Without the group
// (a kernel that refuses the mark) such an exec leaves the pid only. The
// records cost a read, a readlink and a close per exec on the machine.
//
// # Concurrency
//
// A Cache is safe for concurrent use. One goroutine reads the socket and
// applies the events; lookups only read the cache (and poll the socket).
// Close stops the listener and waits for it.
package procinfo
