package journal

import (
	"sync/atomic"
	"unsafe"
)

// toucher writes to the pages of a mapped segment ahead of its writer, on
// another thread. On a virtual machine the first write from user space to
// a page the kernel has just faulted in can cost microseconds (the host
// backs the page then); paying it here keeps it off the publisher's path.
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
	for {
		for w := t.want.Load(); at < w; {
			atomic.AddUint32((*uint32)(unsafe.Pointer(&t.m[at])), 0)
			if at += 4096; at&(64<<10-1) == 0 {
				t.at.Store(at)
				select {
				case <-t.stop:
					return
				default:
				}
			}
		}
		t.at.Store(at)
		select {
		case <-t.kick:
		case <-t.stop:
			return
		}
	}
}

// touched reports whether the pages below end have been touched (false
// for a nil toucher).
func (t *toucher) touched(end int64) bool { return t != nil && t.at.Load() >= end }

// close stops the toucher and waits for it: the mapping may then go.
func (t *toucher) close() {
	close(t.stop)
	<-t.done
}
