package client

import (
	"bytes"
	"io"
	"net/http"
	"strconv"
)

// maxAnswer bounds the answer to a publish read into memory: the seqs of
// the largest batch a server takes fit many times over.
const maxAnswer = 64 << 20

// readAnswer reads a publish answer's body into a buffer of the size it
// announces (at most maxAnswer bytes).
func readAnswer(resp *http.Response) ([]byte, error) {
	if n := resp.ContentLength; n > 0 && n <= maxAnswer {
		b := make([]byte, n)
		_, err := io.ReadFull(resp.Body, b)
		return b, err
	}
	return io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
}

// parseSeqs reads the answer the server gives to a publish,
// {"seqs":[1,2,3]} with an optional line feed, without reflection. ok is
// false for anything else (other spacing, more fields): the caller then
// decodes it with encoding/json, which accepts every form.
func parseSeqs(b []byte) (seqs []uint64, ok bool) {
	const head = `{"seqs":[`
	if !bytes.HasPrefix(b, []byte(head)) {
		return nil, false
	}
	b = b[len(head):]
	if bytes.HasSuffix(b, []byte("\n")) {
		b = b[:len(b)-1]
	}
	if !bytes.HasSuffix(b, []byte("]}")) {
		return nil, false
	}
	b = b[:len(b)-2]
	seqs = make([]uint64, 0, bytes.Count(b, []byte(","))+1)
	if len(b) == 0 {
		return seqs, true
	}
	for len(b) > 0 {
		i := bytes.IndexByte(b, ',')
		num := b
		if i >= 0 {
			num, b = b[:i], b[i+1:]
			if len(b) == 0 {
				return nil, false // a trailing comma
			}
		} else {
			b = nil
		}
		// JSON numbers have no sign, no leading zeros and no '+'.
		if len(num) == 0 || num[0] < '0' || num[0] > '9' || (num[0] == '0' && len(num) > 1) {
			return nil, false
		}
		n, err := strconv.ParseUint(string(num), 10, 64)
		if err != nil {
			return nil, false
		}
		seqs = append(seqs, n)
	}
	return seqs, true
}
