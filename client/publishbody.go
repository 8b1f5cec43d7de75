package client

import (
	"bytes"
	"io"
	"sync"
	"sync/atomic"
)

// A publish encodes its events into one pooled buffer (publishBody) that
// goes back to the pool only when nothing can read it any more: the
// publish returned, and the transport closed every reader it was given
// (RoundTrip may close a request body after it returns, and may ask
// GetBody for another reader to retry on a new connection).

// maxPooledBody bounds the buffers kept in the pool: a rare huge batch
// does not pin its buffer.
const maxPooledBody = 4 << 20

var bodyPool = sync.Pool{New: func() any { return new(publishBody) }}

// publishBody is a request body buffer shared by the readers made from
// it, counted by refs.
type publishBody struct {
	buf  []byte
	refs atomic.Int32
}

// getBody returns a buffer from the pool, empty, held once by the caller.
func getBody() *publishBody {
	b := bodyPool.Get().(*publishBody)
	b.buf = b.buf[:0]
	b.refs.Store(1)
	return b
}

// release drops one hold; the last one puts b back in the pool.
func (b *publishBody) release() {
	if b.refs.Add(-1) != 0 {
		return
	}
	if cap(b.buf) > maxPooledBody {
		b.buf = nil
	}
	bodyPool.Put(b)
}

// reader returns a new reader of b's bytes that holds b until closed.
func (b *publishBody) reader() io.ReadCloser {
	b.refs.Add(1)
	return &bodyReader{Reader: bytes.NewReader(b.buf), b: b}
}

// bodyReader reads a publishBody and releases it on its first Close.
type bodyReader struct {
	*bytes.Reader
	b    *publishBody
	once sync.Once
}

func (r *bodyReader) Close() error {
	r.once.Do(r.b.release)
	return nil
}
