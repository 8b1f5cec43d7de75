// workerbench.js measures the dashboard worker's CPU time per event (its
// SSE splitting, its attribute reader against JSON.parse, and the page's
// own aggregation) on 200,000 typical events, in node:
//
//	node internal/ui/testdata/workerbench.js
globalThis.onmessage = null; globalThis.postMessage = () => {};
const src = require('fs').readFileSync(require('path').join(__dirname, '..', 'assets', 'stream.js'), 'utf8');
const w = new Function(src + '; return { attr, parseMessage, onAggEvent, localSnapshot };')();
const N = 200000;
const lines = [];
for (let i = 0; i < N; i++) {
  const ev = {specversion:"1.0",id:"01JD"+i,source:"semprop://host/fuse",type:"fs.write",subject:`/srv/data/d${i%16}/f${i%5000}.txt`,
    time:"2026-11-27T10:00:00.123456789Z",seq:i+1,boundary:"fuse",boundaries:"fuse,kernel",priority:"normal",hlc:"1764237600123456789.0",
    pid:4242,tid:4242,uid:1000+i%3,gid:1000,comm:["rsync","tar","make"][i%3],inode:131077+i,size:1024,bytes:4096,offset:0,length:4096};
  lines.push(JSON.stringify(ev));
}
const sse = lines.map((l, i) => `id: ${i+1}\nevent: fs.write\ndata: ${l}\n\n`).join('');
function cpu(f) { const a = process.cpuUsage(); f(); const b = process.cpuUsage(a); return (b.user + b.system) / N; }
for (let round = 0; round < 3; round++) {
  const tParse = cpu(() => { for (const l of lines) JSON.parse(l); });
  const tSSE = cpu(() => { let s = 0; while (s < sse.length) { const e = sse.indexOf('\n\n', s); w.parseMessage(sse, s, e); s = e + 2; } });
  const tAgg = cpu(() => { for (let i = 0; i < N; i++) w.onAggEvent(String(i), 'fs.write', lines[i]); });
  console.log(`round ${round}: JSON.parse ${tParse.toFixed(2)} µs/event; SSE split ${tSSE.toFixed(2)} µs/event; attr aggregation ${tAgg.toFixed(2)} µs/event (CPU time)`);
}
console.log('event JSON bytes:', lines[0].length);
for (let round = 0; round < 3; round++) {
  let sink = 0;
  const tJ = cpu(() => { for (const l of lines) { const e = JSON.parse(l); sink += (e.subject.length + e.comm.length + e.uid + e.bytes); } });
  const tA = cpu(() => { for (const d of lines) { let stop = d.indexOf(',"data'); if (stop < 0) stop = d.length;
    sink += w.attr(d, '"subject":', stop).length + w.attr(d, '"comm":', stop).length + w.attr(d, '"uid":', stop) + w.attr(d, '"bytes":', stop); } });
  console.log(`round ${round}: fields by JSON.parse ${tJ.toFixed(2)} µs/event; by attr ${tA.toFixed(2)} µs/event`, sink > 0);
}
