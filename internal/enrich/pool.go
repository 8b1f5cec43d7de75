package enrich

import (
	"sync"
)

// A job asks for the content facts of one path. Its result is valid once
// done is closed.
type job struct {
	rel  string // index key: the path relative to the tree root
	path string // where the file is read (the backing tree)
	done chan struct{}

	res    content
	prev   Facts
	hasPrv bool
	flag   string
	err    error
}

// pool computes jobs on a bounded number of workers. Jobs of one path run
// one at a time, in order; a job that is still queued when a newer one of
// the same path comes is superseded (finished with flagCoalesced) and only
// the newer one runs: a busy file is read once per round, at its latest
// version. It is safe for concurrent use.
type pool struct {
	run      func(*job)
	maxQueue int

	mu     sync.Mutex
	cond   sync.Cond
	queue  []string // paths with a pending job, each at most once
	paths  map[string]*pathState
	closed bool

	wg sync.WaitGroup
}

type pathState struct {
	running bool
	pending *job
}

func newPool(workers, maxQueue int, run func(*job)) *pool {
	p := &pool{run: run, maxQueue: maxQueue, paths: make(map[string]*pathState)}
	p.cond.L = &p.mu
	for range workers {
		p.wg.Go(p.work)
	}
	return p
}

// submit queues j. It reports false, without queueing, when the pool is
// closed or maxQueue paths already wait; superseded reports whether a
// queued job of the same path was replaced.
func (p *pool) submit(j *job) (ok, superseded bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false, false
	}
	st := p.paths[j.rel]
	if st == nil {
		if len(p.queue) >= p.maxQueue {
			return false, false
		}
		p.paths[j.rel] = &pathState{pending: j}
		p.queue = append(p.queue, j.rel)
		p.cond.Signal()
		return true, false
	}
	if old := st.pending; old != nil {
		old.flag = flagCoalesced
		close(old.done)
		superseded = true
	} else if !st.running {
		p.queue = append(p.queue, j.rel) // cannot happen: a state without job runs
	}
	st.pending = j
	return true, superseded
}

func (p *pool) work() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		for len(p.queue) == 0 && !p.closed {
			p.cond.Wait()
		}
		if p.closed {
			return
		}
		rel := p.queue[0]
		p.queue[0] = ""
		p.queue = p.queue[1:]
		st := p.paths[rel]
		j := st.pending
		st.pending, st.running = nil, true
		p.mu.Unlock()
		p.run(j)
		close(j.done)
		p.mu.Lock()
		st.running = false
		if st.pending != nil {
			p.queue = append(p.queue, rel)
			p.cond.Signal()
		} else {
			delete(p.paths, rel)
		}
	}
}

// queued is the number of paths waiting for a worker.
func (p *pool) queued() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.queue)
}

// busy is the number of paths queued or being read.
func (p *pool) busy() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.paths)
}

// close stops the workers once their current jobs are done; queued jobs
// are dropped (their waiters time out). It waits for the workers.
func (p *pool) close() {
	p.mu.Lock()
	p.closed = true
	p.cond.Broadcast()
	p.mu.Unlock()
	p.wg.Wait()
}
