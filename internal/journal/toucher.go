package journal

import (
	"sync/atomic"
	"unsafe"
)

// toucher writes to the pages of a mapped segment ahead of its writer, on
// another thread. On a virtual machine a page costs its first writer
// microseconds: the fault (~5 µs a page here, done for a range at once
// by madvise(MADV_POPULATE_WRITE) in a fraction of that), and then the
// first write from user space to it (1–3 µs more, even after the kernel
// faulted it in: the host backs the page then). Paying both here keeps
// them off the publisher's path.
// A touch is an atomic add of zero to the page's first word: it does not
// change the page's content even when it races with the writer's copy
// into the same word (the writer's store lands before or after it, never
// inside it).
type toucher struct {
	m    []byte
	want atomic.Int64 // touch the pages below this offset
	at   atomic.Int64 // the pages below this offset are touched
	kick chan struct{}
	stop chan struct{}
	done chan struct{}
}

// startToucher starts touching m's pages from offset from on, as asked.
func startToucher(m []byte, from int64) *toucher {
	t := &toucher{m: m, kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	from &^= 4096 - 1
	t.at.Store(from)
	go t.run(from)
	return t
}

// ask has the pages below end touched.
func (t *toucher) ask(end int64) {
	t.want.Store(min(end, int64(len(t.m))))
	select {
	case t.kick <- struct{}{}:
	default:
	}
}

func (t *toucher) run(at int64) {
	defer close(t.done)
	popOff := false
	for {
		for w := t.want.Load(); at < w; {
			// A step at a time: the kernel faults its pages in with one
			// call (a third to a half of what faulting them one by one
			// costs here), then each page gets its first write from user
			// space.
			end := min((min(at+touchStep, w)+4095)&^4095, int64(len(t.m)))
			if !popOff && prefault(t.m[at:end]) != nil {
				popOff = true
			}
			for ; at < end; at += 4096 {
				atomic.AddUint32((*uint32)(unsafe.Pointer(&t.m[at])), 0)
			}
			t.at.Store(at)
			select {
			case <-t.stop:
				return
			default:
			}
		}
		select {
		case <-t.kick:
		case <-t.stop:
			return
		}
	}
}

// touchStep is how much the toucher faults in and touches at once; its
// progress (touched) moves a step at a time.
const touchStep = 64 << 10

// touched reports whether the pages below end have been touched (false
// for a nil toucher).
func (t *toucher) touched(end int64) bool { return t != nil && t.at.Load() >= end }

// close stops the toucher and waits for it: the mapping may then go.
func (t *toucher) close() {
	close(t.stop)
	<-t.done
}
