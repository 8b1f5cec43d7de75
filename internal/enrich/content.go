package enrich

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash"
	"io"
	"io/fs"
	"math"
	"os"
	"strings"
	"sync"
	"syscall"

	"github.com/gabriel-vasile/mimetype"
	"github.com/zeebo/xxh3"
)

// Hash algorithms a tree can ask for.
const (
	HashXXH3   = "xxh3"   // xxh3-128, 32 hex digits (the default)
	HashSHA256 = "sha256" // SHA-256, 64 hex digits
)

const (
	chunkSize  = 64 << 10 // read size, and the size of each entropy window
	mimeSample = 3072     // what mimetype looks at
)

// Facts are what is known about one version of a file's content. The index
// keeps the last Facts of each path.
type Facts struct {
	Hash    string  // hex digest (HashXXH3 or HashSHA256)
	Size    int64   // bytes
	Mime    string  // media type without parameters, e.g. "text/plain"
	Entropy float64 // Shannon entropy in bits per byte of the sample
}

// content is the outcome of reading one file.
type content struct {
	Facts
	lines, words int64 // text files, when counting is on
	text         bool
}

// outcome flags set as the "enrich" attribute.
const (
	flagGone      = "gone"      // the file was gone before it could be read
	flagSkipped   = "skipped"   // the enrichment did not finish within the wait
	flagTooLarge  = "toolarge"  // the file is above the size limit
	flagCoalesced = "coalesced" // a later event of the same batch carries the facts
	flagError     = "error"     // the file could not be read
	flagNotFile   = ""          // not a regular file: no facts, no flag
)

var bufPool = sync.Pool{New: func() any { b := make([]byte, chunkSize); return &b }}

// errNotRegular is returned for anything but a regular file.
var errNotRegular = errors.New("enrich: not a regular file")

// readContent reads the file at p (a backing path) and computes its facts.
// It never follows a final symbolic link, opens with O_NOATIME where the
// system has it, and reads at most maxSize bytes: a larger file yields
// flagTooLarge. A file that does not exist yields flagGone.
func readContent(p string, alg string, counts bool, maxSize int64) (content, string, error) {
	f, err := openNoATime(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			return content{}, flagGone, nil
		}
		if errors.Is(err, syscall.ELOOP) {
			return content{}, flagNotFile, errNotRegular
		}
		return content{}, flagError, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return content{}, flagError, err
	}
	if !st.Mode().IsRegular() {
		return content{}, flagNotFile, errNotRegular
	}
	size := st.Size()
	if size > maxSize {
		return content{Facts: Facts{Size: size}}, flagTooLarge, nil
	}
	var h hash.Hash
	var xh *xxh3.Hasher
	if alg == HashSHA256 {
		h = sha256.New()
	} else {
		xh = xxh3.New()
		h = xh
	}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp

	var hist [256]int64
	var sampled int64
	windows := sampleWindows(size)
	var c content
	var wc wordCounter
	var off int64
	for off < size {
		n, err := f.ReadAt(buf, off)
		if n > 0 {
			b := buf[:n]
			h.Write(b)
			if off == 0 {
				c.Mime = mediaType(mimetype.Detect(b[:min(n, mimeSample)]).String())
				c.text = strings.HasPrefix(c.Mime, "text/")
			}
			for _, w := range windows {
				lo, hi := max(w[0], off), min(w[1], off+int64(n))
				if lo < hi {
					for _, x := range b[lo-off : hi-off] {
						hist[x]++
					}
					sampled += hi - lo
				}
			}
			if counts && c.text {
				wc.add(b)
			}
			off += int64(n)
		}
		if err == io.EOF {
			break // the file shrank while we read: hash what is there
		}
		if err != nil {
			return content{}, flagError, err
		}
	}
	if off == 0 {
		c.Mime = mediaType(mimetype.Detect(nil).String())
		c.text = strings.HasPrefix(c.Mime, "text/")
	}
	c.Size = off
	c.Entropy = entropy(&hist, sampled)
	if xh != nil {
		sum := xh.Sum128().Bytes()
		c.Hash = hex.EncodeToString(sum[:])
	} else {
		c.Hash = hex.EncodeToString(h.Sum(nil))
	}
	if counts && c.text {
		c.lines, c.words = wc.lines, wc.words
		if wc.partial {
			c.lines++
		}
	}
	return c, "", nil
}

// sampleWindows returns the byte ranges entropy is computed over: the
// whole file up to three chunks, else the first, middle and last chunk.
func sampleWindows(size int64) [][2]int64 {
	if size <= 3*chunkSize {
		return [][2]int64{{0, size}}
	}
	mid := size/2 - chunkSize/2
	return [][2]int64{{0, chunkSize}, {mid, mid + chunkSize}, {size - chunkSize, size}}
}

// entropy is the Shannon entropy in bits per byte of a byte histogram.
func entropy(hist *[256]int64, n int64) float64 {
	if n == 0 {
		return 0
	}
	var e float64
	fn := float64(n)
	for _, c := range hist {
		if c > 0 {
			p := float64(c) / fn
			e -= p * math.Log2(p)
		}
	}
	return e
}

// mediaType drops the parameters of a MIME type.
func mediaType(m string) string {
	if i := strings.IndexByte(m, ';'); i >= 0 {
		m = m[:i]
	}
	return strings.TrimSpace(m)
}

// wordCounter counts lines (newlines, plus an unterminated last line) and
// words (runs of bytes that are not ASCII white space) across chunks.
type wordCounter struct {
	lines, words int64
	inWord       bool
	partial      bool // bytes after the last newline
}

func (w *wordCounter) add(b []byte) {
	for _, x := range b {
		switch x {
		case '\n':
			w.lines++
			w.inWord, w.partial = false, false
			continue
		case ' ', '\t', '\r', '\v', '\f':
			w.inWord = false
		default:
			if !w.inWord {
				w.words++
				w.inWord = true
			}
		}
		w.partial = true
	}
}

// openNoATime opens p read-only without following a final symbolic link,
// without blocking on a FIFO and, where possible, without updating its
// access time.
func openNoATime(p string) (*os.File, error) {
	return openFile(p)
}
