package ui

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/semprop/semprop/event"
)

// workerHarness loads stream.js in node with the worker's globals
// stubbed, reads event JSON lines on stdin and prints, per line, what
// the worker's attribute reader (used to aggregate without parsing every
// event) finds in it.
const workerHarness = `
globalThis.onmessage = null;
globalThis.postMessage = () => {};
const src = require('fs').readFileSync(process.argv[2], 'utf8');
const { attr, parseMessage } = new Function(src + '; return { attr, parseMessage };')();
const lines = require('fs').readFileSync(0, 'utf8').split('\n').filter((l) => l);
const out = lines.map((l) => {
  const sse = 'id: 7\nevent: fs.write\ndata: ' + l;
  const m = parseMessage(sse, 0, sse.length);
  const d = m[2];
  let stop = d.indexOf(',"data');
  if (stop < 0) stop = d.length;
  const v = (k) => { const x = attr(d, '"' + k + '":', stop); return x === undefined ? null : x; };
  return { id: m[0], type: m[1], same: d === l, subject: v('subject'), comm: v('comm'), uid: v('uid'), bytes: v('bytes') };
});
process.stdout.write(JSON.stringify(out));
`

// TestWorkerReadsEncoderOutput: the worker's shortcut reader agrees with
// the event encoder on every attribute the dashboard aggregates, for
// hostile values too (quotes, backslashes, control characters, unicode,
// the attribute's own key inside a string or inside data).
func TestWorkerReadsEncoderOutput(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("no node binary: the worker's parsers are checked by the browser tests only")
	}
	type want struct {
		ID      string  `json:"id"`
		Type    string  `json:"type"`
		Same    bool    `json:"same"`
		Subject *string `json:"subject"`
		Comm    *string `json:"comm"`
		UID     *int64  `json:"uid"`
		Bytes   *int64  `json:"bytes"`
	}
	nasty := []string{`/a/"q"/b`, `/back\slash\`, "/tab\there", "/ünïcødé/日本", `/x/,"subject":"/evil"`, `/"data":1`, "/nl\nline", `/\u0000`, "/plain"}
	r := rand.New(rand.NewPCG(1, 2))
	var lines []string
	var wants []want
	for i := range 300 {
		ev := &event.Event{Type: "fs.write", Source: "semprop://t", Time: time.Unix(1764912000, int64(i)).UTC(), Seq: uint64(i + 1)}
		w := want{ID: "7", Type: "fs.write", Same: true}
		if r.IntN(5) > 0 {
			ev.Subject = nasty[r.IntN(len(nasty))] + fmt.Sprint(i)
			w.Subject = &ev.Subject
		}
		if r.IntN(3) > 0 {
			ev.Context.Comm = []string{`r"sync`, `c\p`, "vim", "日本"}[r.IntN(4)]
			w.Comm = &ev.Context.Comm
		}
		if r.IntN(2) > 0 {
			ev.Context.SetUID(uint32(r.IntN(70000)))
			u := int64(ev.Context.UID)
			w.UID = &u
		}
		if r.IntN(2) > 0 {
			ev.Context.SetBytes(r.Int64N(1 << 40))
			b := ev.Context.Bytes
			w.Bytes = &b
		}
		if r.IntN(2) > 0 { // data holding the same keys must not be read
			ev.DataContentType = "application/json"
			ev.Data = []byte(`{"subject":"/from-data","comm":"data","uid":1,"bytes":2}`)
		}
		ev.SetAttr("note", `"subject":"/from-attr"`)
		lines = append(lines, string(ev.AppendJSON(nil)))
		wants = append(wants, w)
	}
	script := filepath.Join(t.TempDir(), "harness.js")
	if err := os.WriteFile(script, []byte(workerHarness), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(node, script, filepath.Join("assets", "stream.js"))
	cmd.Stdin = strings.NewReader(strings.Join(lines, "\n") + "\n")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node: %v\n%s", err, stderr.String())
	}
	var got []want
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("harness output: %v", err)
	}
	if diff := cmp.Diff(wants, got); diff != "" {
		t.Errorf("worker's reading differs from the encoder's (-want +got):\n%s", diff)
	}
}
