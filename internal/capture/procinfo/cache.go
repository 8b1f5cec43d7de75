package procinfo

import (
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of a Cache.
const (
	// DefaultRetention is how long a process's identity is kept after it
	// exited, for the records of its last operations that are read after.
	DefaultRetention = 5 * time.Second
	// DefaultMaxEntries bounds the processes a Cache knows; beyond it the
	// least recently used is forgotten.
	DefaultMaxEntries = 65536
	// maxGens bounds the identities kept per pid (exec, comm and id
	// changes, and earlier processes that had the pid).
	maxGens = 4
)

// ErrUnavailable is returned by Start when the process connector cannot be
// used (not root, not in the initial namespaces, not linux).
var ErrUnavailable = errors.New("procinfo: the kernel's process connector is not available")

// Identity is what a Cache knows about a process.
type Identity struct {
	PID    int32  // process id (thread group id)
	Comm   string // the process's name (its main thread's comm)
	Exe    string // path of the executable; "" when it could not be read
	UID    uint32 // effective uid, valid with HasIDs
	GID    uint32 // effective gid, valid with HasIDs
	HasIDs bool
}

// Window bounds when the operation an identity is looked up for happened,
// in CLOCK_MONOTONIC nanoseconds (Now): after NotBefore and before NotAfter.
// A reader of a kernel queue knows both: the last time it found the queue
// empty (read before that read) and the time the read returned.
type Window struct {
	NotBefore, NotAfter int64
}

// Stats are a Cache's counters.
type Stats struct {
	Events       uint64 // connector events applied
	Hits         uint64 // lookups answered from the cache
	ProcReads    uint64 // lookups answered by reading /proc (processes older than the listener)
	Unresolved   uint64 // lookups that found no identity that is certainly the actor's (exited unseen, or its pid reused within the window): PID only
	ExecLate     uint64 // execs whose process was gone before /proc could be read
	Lost         uint64 // times the kernel dropped connector messages (ENOBUFS)
	Evicted      uint64 // processes forgotten because the cache was full
	Malformed    uint64 // connector datagrams that did not parse
	SlowCatchUps uint64 // lookups that stopped waiting for the listener to catch up
	ExecRecords  uint64 // of ExecLate, execs whose identity came from the exec records instead
}

// gen is one identity a pid had, from one event to the next.
type gen struct {
	id    Identity
	from  int64  // CLOCK_MONOTONIC ns when it began (fork, exec, …); a lower bound for /proc reads
	until int64  // when the process exited; 0 while alive
	life  uint64 // one per process: a fork (or a pid first seen) starts a life, an exec continues it
	none  bool   // nothing is known but the life (a process seen only at its exit)
}

type entry struct {
	pid        int32
	gens       []gen // oldest first
	forgotten  int64 // until of the latest gen dropped for room: it may have been the actor before then
	prev, next *entry
}

// source reads a process's identity from /proc (fakeable in tests).
type source interface {
	// read returns the identity of the process pid (or of the process of
	// thread pid: Identity.PID is the thread group id) and a
	// CLOCK_MONOTONIC time by which it had started (an upper bound); ok is
	// false when it is gone.
	read(pid int32) (id Identity, start int64, ok bool)
	// readExec reads the process tgid right after its exec, exe first;
	// ok is false when not even its comm could be read.
	readExec(tgid int32) (id Identity, ok bool)
}

// execSource gives the identity an exec's records say (exec_linux.go).
type execSource interface {
	take(pid int32) (comm, exe string, setid, ok bool)
	forget(pid int32)
}

// Cache maps pids to process identities learnt from the kernel's process
// connector while the processes were alive (see the package comment). All
// methods are safe for concurrent use.
type Cache struct {
	log       *slog.Logger
	src       source
	retention int64
	max       int

	// sync, if set, waits until the connector events queued before a time
	// are applied (the listener's catch-up); false if it gave up waiting.
	sync  func(notAfter int64) bool
	execs execSource    // exec records; nil without them
	close func()        // stops the listener; nil without one
	done  chan struct{} // closed by close

	events, hits, procReads, unresolved atomic.Uint64
	execLate, lost, evicted, malformed  atomic.Uint64
	slowCatchUp, execRecords            atomic.Uint64

	mu      sync.Mutex
	m       map[int32]*entry
	threads map[int32]int32 // thread id → thread group id, for threads born since the start
	head    *entry          // most recently used
	tail    *entry
	exits   []exitRec // FIFO of exits, for the retention sweep
	lives   uint64
}

type exitRec struct {
	pid   int32
	until int64
}

func newCache(src source, log *slog.Logger) *Cache {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Cache{
		log:       log,
		src:       src,
		retention: int64(DefaultRetention),
		max:       DefaultMaxEntries,
		m:         make(map[int32]*entry),
		threads:   make(map[int32]int32),
	}
}

// Stats returns a snapshot of the counters.
func (c *Cache) Stats() Stats {
	if c == nil {
		return Stats{}
	}
	return Stats{
		Events:       c.events.Load(),
		Hits:         c.hits.Load(),
		ProcReads:    c.procReads.Load(),
		Unresolved:   c.unresolved.Load(),
		ExecLate:     c.execLate.Load(),
		Lost:         c.lost.Load(),
		Evicted:      c.evicted.Load(),
		Malformed:    c.malformed.Load(),
		SlowCatchUps: c.slowCatchUp.Load(),
		ExecRecords:  c.execRecords.Load(),
	}
}

// Close stops the listener and waits for it; lookups keep working on what
// the cache holds, and read /proc for the rest. It is safe to call more than
// once, and on a nil Cache.
func (c *Cache) Close() error {
	if c != nil && c.close != nil {
		c.close()
	}
	return nil
}

// Lookup returns the identity of the process pid (a thread group id) that
// made an operation within w. ok is false when no identity is certainly
// the actor's: the process exited before the cache learnt it, or another
// process had the pid within w. Lookup never reads /proc for a pid whose
// process may have changed within w.
func (c *Cache) Lookup(pid int32, w Window) (Identity, bool) {
	if pid <= 0 {
		return Identity{PID: pid}, false
	}
	if c.sync != nil && !c.sync(w.NotAfter) {
		// The listener is behind: an exec or exit before the operation
		// may not be applied yet, so what the cache holds may be the
		// identity before it. /proc answers as for an unknown pid.
		return c.readProc(pid, w)
	}
	c.mu.Lock()
	if e := c.m[pid]; e != nil {
		id, res := e.pick(w)
		if res != pickNone {
			c.touchLocked(e)
			c.mu.Unlock()
			if res == pickFound {
				c.hits.Add(1)
				return id, true
			}
			c.unresolved.Add(1)
			return Identity{PID: pid}, false
		}
	}
	c.mu.Unlock()
	return c.readProc(pid, w)
}

// LookupThread returns the identity of the process of thread tid, which is
// alive (a FUSE request's caller): Identity.PID is its thread group id.
func (c *Cache) LookupThread(tid int32) (Identity, bool) {
	if tid <= 0 {
		return Identity{}, false
	}
	now := Now()
	if c.sync != nil {
		c.sync(now) // Lookup below checks again
	}
	w := Window{NotBefore: now, NotAfter: now + 1}
	c.mu.Lock()
	pid, ok := c.threads[tid]
	if !ok && c.m[tid] != nil {
		pid, ok = tid, true
	}
	c.mu.Unlock()
	if ok {
		return c.Lookup(pid, w)
	}
	// A thread older than the listener: /proc says which process it is.
	id, _, ok := c.src.read(tid)
	if !ok {
		c.unresolved.Add(1)
		return Identity{}, false
	}
	if id.PID != tid {
		c.mu.Lock()
		if len(c.threads) >= c.max {
			clear(c.threads)
		}
		c.threads[tid] = id.PID
		c.mu.Unlock()
	}
	return c.Lookup(id.PID, w)
}

// readProc answers a lookup the cache could not from /proc: right only if
// the process there held the pid throughout w, that is, started before it.
func (c *Cache) readProc(pid int32, w Window) (Identity, bool) {
	id, start, ok := c.src.read(pid)
	if !ok || start > w.NotBefore || id.PID != pid {
		c.unresolved.Add(1)
		return Identity{PID: pid}, false
	}
	c.procReads.Add(1)
	c.mu.Lock()
	e := c.entryLocked(pid)
	if len(e.gens) == 0 || e.gens[len(e.gens)-1].until != 0 {
		c.lives++
		e.addGen(gen{id: id, from: start, life: c.lives})
	}
	c.mu.Unlock()
	return id, true
}

type pickResult int

const (
	pickNone      pickResult = iota // no identity of the pid overlaps w
	pickFound                       // exactly one process had the pid within w
	pickUncertain                   // another process had it, or nothing is known of the one that did
)

// pick chooses the identity that was the pid's within w: the newest that
// overlaps w (an exec or a rename within w counts as after the operation),
// provided every identity that overlaps w belongs to the same process.
func (e *entry) pick(w Window) (Identity, pickResult) {
	var best *gen
	newer := false
	for i := len(e.gens) - 1; i >= 0; i-- {
		g := &e.gens[i]
		if g.from >= w.NotAfter {
			newer = true
			continue
		}
		if g.until != 0 && g.until < w.NotBefore {
			break // older gens ended earlier still
		}
		if best == nil {
			best = g
		} else if g.life != best.life {
			return Identity{}, pickUncertain
		}
	}
	if best == nil {
		if newer || e.forgotten >= w.NotBefore {
			return Identity{}, pickUncertain
		}
		return Identity{}, pickNone
	}
	if best.none || e.forgotten >= w.NotBefore {
		return Identity{}, pickUncertain
	}
	return best.id, pickFound
}

// addGen appends g, dropping the oldest beyond maxGens.
func (e *entry) addGen(g gen) {
	if len(e.gens) == maxGens {
		e.forgotten = max(e.forgotten, e.gens[0].until, e.gens[1].from)
		copy(e.gens, e.gens[1:])
		e.gens = e.gens[:maxGens-1]
	}
	e.gens = append(e.gens, g)
}

// alive returns the pid's current identity, or nil.
func (e *entry) alive() *gen {
	if n := len(e.gens); n > 0 && e.gens[n-1].until == 0 {
		return &e.gens[n-1]
	}
	return nil
}

// apply applies one connector event; read is called for a process whose
// identity must be read now (exec, or the parent of a fork the cache does
// not know). It is called by the listener, one event at a time, in order.
func (c *Cache) apply(ev *Event) {
	c.events.Add(1)
	switch ev.What {
	case WhatFork:
		if ev.PID != ev.TGID {
			c.mu.Lock()
			if len(c.threads) >= c.max {
				clear(c.threads)
			}
			c.threads[ev.PID] = ev.TGID
			c.mu.Unlock()
			return
		}
		c.mu.Lock()
		var parent *gen
		if e := c.m[ev.ParentTGID]; e != nil {
			parent = e.alive()
		}
		if parent == nil {
			c.mu.Unlock()
			id, start, ok := c.src.read(ev.ParentTGID)
			c.mu.Lock()
			e := c.entryLocked(ev.ParentTGID)
			if parent = e.alive(); parent == nil {
				c.lives++
				g := gen{id: Identity{PID: ev.ParentTGID}, from: start, life: c.lives, none: !ok}
				if ok {
					g.id = id
				}
				e.addGen(g)
				parent = e.alive()
			}
		}
		id := parent.id
		id.PID = ev.TGID
		c.startLocked(ev.TGID, gen{id: id, from: ev.Time}, true)
		c.mu.Unlock()
	case WhatExec:
		id, ok := c.src.readExec(ev.TGID)
		var rec bool // the identity comes from the exec records
		var recSetID bool
		switch {
		case ok && id.Exe != "":
			if c.execs != nil {
				c.execs.forget(ev.TGID) // not needed
			}
		default:
			c.execLate.Add(1) // gone, or a zombie already (comm and ids, no exe)
			if c.execs == nil {
				break
			}
			comm, exe, setid, found := c.execs.take(ev.TGID)
			if !found {
				break
			}
			c.execRecords.Add(1)
			if !ok {
				id = Identity{PID: ev.TGID, Comm: comm}
			}
			id.Exe, rec, recSetID, ok = exe, !id.HasIDs, setid, true
		}
		if !ok {
			id = Identity{PID: ev.TGID}
		}
		c.mu.Lock()
		if rec && !recSetID {
			// The ids it had before the exec (from its fork).
			if e := c.m[ev.TGID]; e != nil {
				if cur := e.alive(); cur != nil && cur.id.HasIDs {
					id.UID, id.GID, id.HasIDs = cur.id.UID, cur.id.GID, true
				}
			}
		}
		c.startLocked(ev.TGID, gen{id: id, from: ev.Time, none: !ok}, false)
		c.mu.Unlock()
	case WhatComm, WhatUID, WhatGID:
		if ev.PID != ev.TGID && ev.What == WhatComm {
			return // a thread's own name; identities are the main thread's
		}
		c.mu.Lock()
		if e := c.m[ev.TGID]; e != nil {
			if cur := e.alive(); cur != nil {
				g := *cur
				g.from = ev.Time
				switch ev.What {
				case WhatComm:
					g.id.Comm = ev.CommString()
				case WhatUID:
					g.id.UID = ev.ID
				case WhatGID:
					g.id.GID = ev.ID
				}
				e.addGen(g)
			}
		}
		c.mu.Unlock()
	case WhatExit:
		c.mu.Lock()
		if ev.PID != ev.TGID {
			delete(c.threads, ev.PID)
			c.mu.Unlock()
			return
		}
		e := c.entryLocked(ev.TGID)
		if cur := e.alive(); cur != nil {
			cur.until = ev.Time
		} else {
			c.lives++
			e.addGen(gen{id: Identity{PID: ev.TGID}, until: ev.Time, life: c.lives, none: true})
		}
		c.exits = append(c.exits, exitRec{pid: ev.TGID, until: ev.Time})
		c.mu.Unlock()
	}
}

// startLocked begins identity g of pid at g.from: a new process (fork), or
// a new program of the live one (exec; a new process if none is known).
func (c *Cache) startLocked(pid int32, g gen, fork bool) {
	e := c.entryLocked(pid)
	cur := e.alive()
	switch {
	case cur != nil && !fork:
		g.life = cur.life
	case cur != nil: // its exit was missed: the pid has a new process now
		cur.until = g.from
		fallthrough
	default:
		c.lives++
		g.life = c.lives
	}
	e.addGen(g)
}

// entryLocked returns pid's entry, made most recently used, creating it
// (and evicting the least recently used beyond the bound) if need be.
func (c *Cache) entryLocked(pid int32) *entry {
	e := c.m[pid]
	if e == nil {
		e = &entry{pid: pid}
		c.m[pid] = e
		if len(c.m) > c.max && c.tail != nil {
			old := c.tail
			c.unlinkLocked(old)
			delete(c.m, old.pid)
			c.evicted.Add(1)
		}
	} else {
		c.unlinkLocked(e)
	}
	c.pushLocked(e)
	return e
}

func (c *Cache) touchLocked(e *entry) {
	if c.head != e {
		c.unlinkLocked(e)
		c.pushLocked(e)
	}
}

func (c *Cache) pushLocked(e *entry) {
	e.prev, e.next = nil, c.head
	if c.head != nil {
		c.head.prev = e
	}
	c.head = e
	if c.tail == nil {
		c.tail = e
	}
}

func (c *Cache) unlinkLocked(e *entry) {
	if e.prev != nil {
		e.prev.next = e.next
	} else if c.head == e {
		c.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else if c.tail == e {
		c.tail = e.prev
	}
	e.prev, e.next = nil, nil
}

// sweep forgets processes that exited more than the retention before now.
func (c *Cache) sweep(now int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	i := 0
	for ; i < len(c.exits) && c.exits[i].until < now-c.retention; i++ {
		x := c.exits[i]
		e := c.m[x.pid]
		if e == nil {
			continue
		}
		if n := len(e.gens); n > 0 && e.gens[n-1].until == x.until {
			c.unlinkLocked(e)
			delete(c.m, x.pid)
		}
	}
	c.exits = append(c.exits[:0], c.exits[i:]...)
}

// reset forgets everything (the kernel dropped events: what the cache
// knows may be stale); lookups read /proc until new events teach it again.
func (c *Cache) reset() {
	c.mu.Lock()
	clear(c.m)
	clear(c.threads)
	c.head, c.tail, c.exits = nil, nil, c.exits[:0]
	c.mu.Unlock()
}

// Len returns the number of processes the cache holds.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}
