package output

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/semprop/semprop/event"
)

// Content types of the CloudEvents encodings.
const (
	ctStructured = event.MediaType
	ctBatch      = event.MediaTypeBatch
)

// eachAttr calls f with every CloudEvents context attribute of ev except
// datacontenttype (binary mode carries it as the content type), by name,
// with its value as text: the attributes of ev.AppendJSON.
func eachAttr(ev *event.Event, f func(name, value string)) {
	if ev.SourceID != "" {
		f("id", ev.SourceID)
	} else {
		f("id", ev.ID.String())
	}
	f("source", ev.Source)
	f("specversion", "1.0")
	f("type", ev.Type)
	if ev.Subject != "" {
		f("subject", ev.Subject)
	}
	if !ev.Time.IsZero() {
		f("time", ev.Time.UTC().Format(time.RFC3339Nano))
	}
	if ev.Seq != 0 {
		f("seq", strconv.FormatUint(ev.Seq, 10))
	}
	if ev.Boundary != event.BoundaryNone {
		f("boundary", ev.Boundary.String())
	}
	if ev.Boundaries != 0 {
		f("boundaries", ev.Boundaries.String())
	}
	f("priority", ev.Priority.String())
	if !ev.HLC.IsZero() {
		f("hlc", ev.HLC.String())
	}
	if ev.Flags&event.FlagRescan != 0 {
		f("rescan", "true")
	}
	c := &ev.Context
	num := func(name string, has event.Fields, v int64) {
		if c.Known&has != 0 {
			f(name, strconv.FormatInt(v, 10))
		}
	}
	num("pid", event.HasPID, int64(c.PID))
	num("tid", event.HasTID, int64(c.TID))
	num("uid", event.HasUID, int64(c.UID))
	num("gid", event.HasGID, int64(c.GID))
	if c.Comm != "" {
		f("comm", c.Comm)
	}
	if c.Exe != "" {
		f("exe", c.Exe)
	}
	if c.Known&event.HasInode != 0 {
		f("inode", strconv.FormatUint(c.Inode, 10))
	}
	num("size", event.HasSize, c.Size)
	num("bytes", event.HasBytes, c.Bytes)
	num("offset", event.HasOffset, c.Offset)
	num("length", event.HasLength, c.Length)
	num("mode", event.HasMode, int64(c.Mode))
	if c.OldPath != "" {
		f("oldpath", c.OldPath)
	}
	if c.Target != "" {
		f("target", c.Target)
	}
	for _, a := range ev.Attrs {
		f(a.Key, a.Value)
	}
}

// binaryBody returns the body and content type of ev in binary content
// mode: the data as it is (JSON, or the bytes of binary data).
func binaryBody(ev *event.Event) (body []byte, contentType string) {
	ct := ev.DataContentType
	if ct == "" && len(ev.Data) > 0 {
		if ev.Flags&event.FlagDataBinary != 0 || !json.Valid(ev.Data) {
			ct = "application/octet-stream"
		} else {
			ct = "application/json"
		}
	}
	return ev.Data, ct
}

// appendBatch appends the JSON array of evs in structured form.
func appendBatch(b []byte, evs []*event.Event) []byte {
	b = append(b, '[')
	for i, ev := range evs {
		if i > 0 {
			b = append(b, ',')
		}
		b = ev.AppendJSON(b)
	}
	return append(b, ']')
}
