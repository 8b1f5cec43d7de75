// stream.js is the dashboard's Web Worker: it reads the server's
// Server-Sent Events with fetch() (EventSource cannot send an
// Authorization header), parses and aggregates them off the page's main
// thread, and posts the page at most one message per frame (16 ms) with
// the newest tail events, and aggregates at most every 50 ms (20 Hz), so
// a burst of 100k events/s costs the page a few small messages a frame.
// A tail event goes out as soon as it is read unless a tail message went
// out less than 16 ms before: messages with aggregates only do not hold
// it back (they ride along with the tail when both are due).
//
// Streams (each resumes with Last-Event-ID after a drop):
//   agg      GET /v1/stream?after=now: everything the token may see, for
//            the rates, bytes and top lists when the server has no
//            analytics (/v1/analytics/live answers 404).
//   live     GET /v1/analytics/live: the server's aggregates, when present.
//   tail     GET /v1/stream?after=now&type=..&path=..: the live tail, when
//            filtered or when agg is not running (unfiltered tail events
//            come from agg otherwise).
//   insights GET /v1/stream?since=15m&type=semprop.insight.>&type=semprop.rule.>
'use strict';

const POST_MS = 16;        // tail and insights: at most one message a frame
const AGG_MS = 50;         // aggregates: at most 20 snapshots a second
const TAIL_KEEP = 100;     // tail events handed on per update, newest
const RATE_SECONDS = 300;  // the rate charts' span
const TOP_SECONDS = 60;    // the top lists' window
const TOP_KEYS_PER_SEC = 2000; // distinct keys kept per second and dimension
const TOP_K = 10;
const MAX_TYPES = 8;       // series in the rate chart; the rest is "other"

let token = '';
let streams = {};          // name -> {ctl, stopped}
let liveMode = 'probing';  // 'server' (analytics) | 'local' | 'probing'

// ---- pending update ------------------------------------------------------
let tail = [];             // raw tail events since the last post: [seq, type, data]
let tailDropped = 0;
let insights = [];
let statuses = {};         // stream name -> {state, status, message}
let lastPost = 0;          // the last message of any kind
let lastTailPost = 0;      // the last message with tail events, insights or statuses
let timer = 0;
let dirtyAgg = false;

let lastAgg = 0;

// schedule posts what is pending as soon as the last message is POST_MS
// old: an event alone goes out at once, a burst in one message a frame.
let timerAt = 0;
let micro = false;

function schedule() {
  const now = performance.now();
  let at = lastTailPost + POST_MS;
  if (!tail.length && !insights.length && Object.keys(statuses).length === 0) at = Math.max(lastPost + POST_MS, lastAgg + AGG_MS);
  if (micro || (timer && timerAt <= at)) return;
  if (at <= now) { // after the chunk being parsed: one message for all of it
    micro = true;
    queueMicrotask(flush);
    return;
  }
  if (timer) clearTimeout(timer);
  timerAt = at;
  timer = setTimeout(flush, at - now);
}

function flush() {
  micro = false;
  if (timer) { clearTimeout(timer); timer = 0; }
  const now = performance.now();
  lastPost = now;
  const msg = { op: 'update', statuses, mode: liveMode, work };
  if (tail.length || insights.length || Object.keys(statuses).length) lastTailPost = now;
  statuses = {};
  if (tail.length) {
    msg.tail = tail.map(project);
    msg.tailDropped = tailDropped;
    tail = [];
    tailDropped = 0;
  }
  if (insights.length) {
    msg.insights = insights.map(project);
    insights = [];
  }
  if (dirtyAgg) {
    if (now - lastAgg >= AGG_MS) {
      dirtyAgg = false;
      lastAgg = now;
      msg.agg = liveMode === 'server' ? serverSnapshot() : localSnapshot();
    } else {
      timerAt = lastAgg + AGG_MS;
      timer = setTimeout(flush, timerAt - now);
    }
  }
  if (msg.tail || msg.insights || msg.agg || Object.keys(msg.statuses).length) postMessage(msg);
}

// project parses a raw event (lazily: only those handed on) into what
// the page shows.
function project(r) {
  let e;
  try { e = typeof r[2] === 'string' ? JSON.parse(r[2]) : r[2]; } catch (err) { e = { type: r[1] }; }
  const p = {
    seq: e.seq != null ? e.seq : Number(r[0]), id: e.id, time: e.time, type: e.type || r[1],
    subject: e.subject, comm: e.comm, uid: e.uid, bytes: e.bytes, readAt: r[3],
  };
  if (e.severity) p.severity = e.severity;
  if (e.rule) p.rule = e.rule;
  const d = e.data;
  if (d && typeof d === 'object') {
    if (typeof d.message === 'string') p.message = d.message;
    else if (typeof d.explanation === 'string') p.message = d.explanation;
    else if (typeof d.summary === 'string') p.message = d.summary;
    if (!p.rule && typeof d.rule === 'string') p.rule = d.rule;
  }
  return p;
}

// ---- SSE over fetch ------------------------------------------------------

function setStatus(name, state, status, message) {
  if (name === 'live' && state === 'live') liveMode = 'server';
  statuses[name] = { state, status: status || 0, message: message || '' };
  schedule();
}

function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }

// parseMessage parses one SSE message (without its blank line) into
// [id, type, data]; id and data are null when absent.
function parseMessage(buf, start, end) {
  let id = null, type = '', data = null;
  let ls = start;
  while (ls < end) {
    let le = buf.indexOf('\n', ls);
    if (le < 0 || le > end) le = end;
    const c = buf.charCodeAt(ls);
    if (c === 100 && buf.startsWith('data:', ls)) { // d
      const v = buf.slice(ls + (buf.charCodeAt(ls + 5) === 32 ? 6 : 5), le);
      data = data === null ? v : data + '\n' + v;
    } else if (c === 105 && buf.startsWith('id:', ls)) { // i
      id = buf.slice(ls + (buf.charCodeAt(ls + 3) === 32 ? 4 : 3), le);
    } else if (c === 101 && buf.startsWith('event:', ls)) { // e
      type = buf.slice(ls + (buf.charCodeAt(ls + 6) === 32 ? 7 : 6), le);
    }
    ls = le + 1;
  }
  return [id, type, data];
}

// sse follows url, calling onEvent(id, type, data) per message with data,
// and reconnects after a drop, resuming after the last id. With
// opts.newest = N it hands on only the newest N messages of each chunk
// read (a tail needs no more) and calls opts.skipped(n) with the number
// it passed over, found without parsing them.
async function sse(name, url, onEvent, opts) {
  const newest = (opts && opts.newest) || 0;
  const st = { ctl: new AbortController(), stopped: false };
  if (streams[name]) stop(name);
  streams[name] = st;
  let last = null;
  let backoff = 500;
  while (!st.stopped) {
    try {
      const headers = {};
      if (token) headers.Authorization = 'Bearer ' + token;
      if (last !== null) headers['Last-Event-ID'] = last;
      const res = await fetch(url, { headers, signal: st.ctl.signal, cache: 'no-store' });
      if (!res.ok) {
        let msg = res.statusText;
        try { msg = (await res.json()).error || msg; } catch (e) { /* not JSON */ }
        setStatus(name, 'error', res.status, msg);
        if (res.status === 400 || res.status === 401 || res.status === 403 || res.status === 404) return res.status;
        await sleep(backoff);
        backoff = Math.min(backoff * 2, 10000);
        continue;
      }
      setStatus(name, 'live');
      backoff = 500;
      const reader = res.body.getReader();
      const dec = new TextDecoder();
      let buf = '';
      let ended = false;
      while (!ended) {
        const { value, done } = await reader.read();
        if (done || st.stopped) break;
        buf += dec.decode(value, { stream: true });
        readAt = performance.timeOrigin + performance.now();
        const lastEnd = buf.lastIndexOf('\n\n');
        if (lastEnd < 0) continue;
        if (newest) {
          // Walk back from the end over at most `newest` messages.
          const picked = [];
          let lastSet = false;
          let end = lastEnd;
          while (end >= 0) {
            const prev = end === 0 ? -1 : buf.lastIndexOf('\n\n', end - 1);
            const m = parseMessage(buf, prev < 0 ? 0 : prev + 2, end);
            if (!lastSet && m[0] !== null) { last = m[0]; lastSet = true; }
            if (m[1] === 'end') ended = true;
            if (m[2] !== null) picked.push(m);
            end = prev;
            if (picked.length >= newest) break;
          }
          let skipped = 0;
          for (let i = end; i > 0; i = buf.lastIndexOf('\n\n', i - 1)) skipped++;
          if (skipped && opts.skipped) opts.skipped(skipped);
          for (let i = picked.length - 1; i >= 0; i--) onEvent(picked[i][0], picked[i][1], picked[i][2]);
        } else {
          let start = 0;
          let n = 0;
          while (start <= lastEnd) {
            const end = buf.indexOf('\n\n', start);
            const m = parseMessage(buf, start, end);
            start = end + 2;
            if (m[0] !== null) last = m[0];
            if (m[1] === 'end') { ended = true; break; }
            if (m[2] !== null) onEvent(m[0], m[1], m[2]);
            // A big chunk (the worker fell behind) still updates the page
            // every AGG_MS while it is parsed.
            if (++n % 1024 === 0 && performance.now() - lastPost >= AGG_MS) flush();
          }
          work.events += n;
        }
        buf = buf.slice(lastEnd + 2);
        work.ms += performance.now() - (readAt - performance.timeOrigin);
        work.chunks++;
      }
    } catch (e) {
      if (st.stopped) return 0;
    }
    if (st.stopped) return 0;
    setStatus(name, 'down');
    await sleep(backoff);
    backoff = Math.min(backoff * 2, 10000);
  }
  return 0;
}

function stop(name) {
  const st = streams[name];
  if (!st) return;
  st.stopped = true;
  st.ctl.abort();
  delete streams[name];
}

// ---- tail and insights ---------------------------------------------------

let tailFilter = { type: '', path: '' };
let readAt = 0; // when the chunk being parsed was read (ms since the epoch)
const work = { ms: 0, events: 0, chunks: 0 }; // the worker's parsing: time, messages, chunks

function pushTail(id, type, data) {
  tail.push([id, type, data, readAt]);
  if (tail.length > 2 * TAIL_KEEP) {
    tailDropped += tail.length - TAIL_KEEP;
    tail.splice(0, tail.length - TAIL_KEEP);
  }
  schedule();
}

function tailFromAgg() { return liveMode === 'local' && !tailFilter.type && !tailFilter.path; }

function startTail() {
  stop('tail');
  if (tailFromAgg()) return;
  const q = new URLSearchParams({ after: 'now' });
  if (tailFilter.type) q.set('type', tailFilter.type);
  if (tailFilter.path) q.set('path', tailFilter.path);
  sse('tail', '/v1/stream?' + q.toString(), pushTail, { newest: TAIL_KEEP, skipped: (n) => { tailDropped += n; } });
}

function startInsights() {
  const q = 'since=15m&type=' + encodeURIComponent('semprop.insight.>') + '&type=' + encodeURIComponent('semprop.rule.>');
  sse('insights', '/v1/stream?' + q, (id, type, data) => {
    insights.push([id, type, data, readAt]);
    if (insights.length > 200) insights.splice(0, insights.length - 200);
    schedule();
  });
}

// ---- local aggregation (no analytics on the server) ----------------------

// buckets: one per second of arrival, the newest last.
let buckets = [];
let totalEvents = 0;
let totalBytes = 0;
let typeTotals = new Map(); // over the rate span, to choose the chart's series

function bucket(sec) {
  let b = buckets.length ? buckets[buckets.length - 1] : null;
  if (b && b.sec === sec) return b;
  b = { sec, n: 0, bytes: 0, types: new Map(), path: new Map(), comm: new Map(), uid: new Map() };
  buckets.push(b);
  while (buckets.length && buckets[0].sec <= sec - RATE_SECONDS) {
    const old = buckets.shift();
    for (const [t, c] of old.types) {
      const v = (typeTotals.get(t) || 0) - c;
      if (v > 0) typeTotals.set(t, v); else typeTotals.delete(t);
    }
  }
  return b;
}

function count(m, k, bytes) {
  let e = m.get(k);
  if (e === undefined) {
    if (m.size >= TOP_KEYS_PER_SEC) k = '(other)';
    e = m.get(k);
    if (e === undefined) { e = [0, 0]; m.set(k, e); }
  }
  e[0]++;
  e[1] += bytes;
}

// attr reads a top-level attribute of an event's compact JSON without
// parsing all of it: the server writes every attribute before "data", and
// the key pattern cannot occur inside a string (its quotes would be
// escaped). It returns undefined when the attribute is absent.
function attr(s, key, stop) {
  const i = s.indexOf(key);
  if (i < 0 || i > stop) return undefined;
  const j = i + key.length;
  if (s.charCodeAt(j) === 34) { // a string
    let k = s.indexOf('"', j + 1);
    const bs = s.indexOf('\\', j + 1);
    if (bs < 0 || bs > k) return s.slice(j + 1, k);
    for (k = j + 1; k < s.length; k++) { // escapes: find the real end
      const c = s.charCodeAt(k);
      if (c === 92) k++;
      else if (c === 34) break;
    }
    return JSON.parse(s.slice(j, k + 1));
  }
  let k = j;
  for (; k < s.length; k++) {
    const c = s.charCodeAt(k);
    if (c === 44 || c === 125) break; // , }
  }
  return Number(s.slice(j, k));
}

function onAggEvent(id, type, data) {
  let stop = data.indexOf(',"data');
  if (stop < 0) stop = data.length;
  const subject = attr(data, '"subject":', stop);
  const comm = attr(data, '"comm":', stop);
  const uid = attr(data, '"uid":', stop);
  let bytes = 0;
  if (type === 'fs.write' || type === 'fs.create') {
    const b = attr(data, '"bytes":', stop);
    if (typeof b === 'number' && b > 0) bytes = b;
  }
  const b = bucket(Math.floor(Date.now() / 1000));
  b.n++;
  b.bytes += bytes;
  totalEvents++;
  totalBytes += bytes;
  b.types.set(type, (b.types.get(type) || 0) + 1);
  typeTotals.set(type, (typeTotals.get(type) || 0) + 1);
  if (subject) count(b.path, subject, bytes);
  if (comm) count(b.comm, comm, bytes);
  if (uid !== undefined) count(b.uid, String(uid), bytes);
  if (tailFromAgg()) pushTail(id, type, data);
  dirtyAgg = true;
  schedule();
}

let topCache = null;
let topSec = -1;

function tops(now) {
  if (topSec === now && topCache) return topCache;
  const out = {};
  for (const dim of ['path', 'comm', 'uid']) {
    const sum = new Map();
    for (const b of buckets) {
      if (b.sec <= now - TOP_SECONDS) continue;
      for (const [k, v] of b[dim]) {
        const s = sum.get(k);
        if (s) { s[0] += v[0]; s[1] += v[1]; } else sum.set(k, [v[0], v[1]]);
      }
    }
    out[dim] = [...sum].sort((a, b) => b[1][0] - a[1][0]).slice(0, TOP_K).map(([k, v]) => ({ key: k, count: v[0], bytes: v[1] }));
  }
  topSec = now;
  topCache = out;
  return out;
}

function localSnapshot() {
  const now = Math.floor(Date.now() / 1000);
  const names = [...typeTotals].sort((a, b) => b[1] - a[1]).map((x) => x[0]);
  const shown = names.slice(0, MAX_TYPES).sort(); // a stable order: the chart keeps its series
  const other = names.length > MAX_TYPES;
  const t = [];
  const series = shown.map(() => []);
  const otherSeries = [];
  const bytes = [];
  let i = 0;
  // From the first second seen (the charts fill up from the page's start).
  const first = Math.max(now - RATE_SECONDS + 1, buckets.length ? buckets[0].sec : now);
  while (i < buckets.length && buckets[i].sec < first) i++;
  for (let s = first; s <= now; s++) {
    let b = null;
    if (i < buckets.length && buckets[i].sec === s) b = buckets[i++];
    // The current second is partial: scale it to a rate.
    const scale = s === now ? 1000 / Math.max(100, Date.now() - now * 1000) : 1;
    t.push(s);
    let rest = b ? b.n : 0;
    shown.forEach((name, j) => {
      const c = b ? (b.types.get(name) || 0) : 0;
      rest -= c;
      series[j].push(c * scale);
    });
    otherSeries.push(rest * scale);
    bytes.push(b ? b.bytes * scale : 0);
  }
  if (other) { shown.push('other'); series.push(otherSeries); }
  return {
    source: 'local', window: TOP_SECONDS + 's',
    rate: { t, types: shown, values: series }, bytes: { t, values: bytes },
    top: tops(now), totals: { events: totalEvents, bytes: totalBytes },
  };
}

// ---- server analytics ----------------------------------------------------

// srv holds the charts built from /v1/analytics/series (history) and the
// live frames, which add one point per complete second.
let srv = { t: [], types: new Map(), bytes: [], top: {}, totals: {}, window: '60s' };

function srvPoint(sec, counts, bytes) {
  const n = srv.t.length;
  if (n && srv.t[n - 1] >= sec) return;
  srv.t.push(sec);
  for (const [k, arr] of srv.types) arr.push(counts[k] || 0);
  for (const k of Object.keys(counts)) {
    if (!srv.types.has(k)) {
      const arr = new Array(srv.t.length).fill(0);
      arr[arr.length - 1] = counts[k];
      srv.types.set(k, arr);
    }
  }
  srv.bytes.push(bytes);
  if (srv.t.length > RATE_SECONDS) {
    const cut = srv.t.length - RATE_SECONDS;
    srv.t.splice(0, cut);
    srv.bytes.splice(0, cut);
    for (const [k, arr] of srv.types) {
      arr.splice(0, cut);
      if (!arr.some((v) => v > 0)) srv.types.delete(k);
    }
  }
}

function onLive(id, type, data) {
  let f;
  try { f = JSON.parse(data); } catch (e) { return; }
  if (f.second) srvPoint(f.second, f.second_counts || {}, f.bytes_per_sec || 0);
  if (f.top) srv.top = f.top;
  srv.totals = { rate: f.rate || 0, bytes: f.bytes_total || 0, lagMs: f.time && f.event_time ? f.time - f.event_time : null };
  dirtyAgg = true;
  schedule();
}

// backfill loads the last RATE_SECONDS of per-second history.
async function backfill() {
  const headers = token ? { Authorization: 'Bearer ' + token } : {};
  try {
    const [ev, by] = await Promise.all(['events', 'bytes'].map((m) =>
      fetch('/v1/analytics/series?metric=' + m + '&by=type&step=1s&k=' + MAX_TYPES, { headers, cache: 'no-store' })
        .then((r) => (r.ok ? r.json() : null))));
    if (!ev || !ev.times || srv.t.length) return;
    const bytesAt = new Map();
    if (by && by.times) {
      by.times.forEach((t, i) => bytesAt.set(t, by.series.reduce((s, x) => s + (x.values[i] || 0), 0)));
    }
    let started = false; // the charts start at the first second with events
    ev.times.forEach((t, i) => {
      const counts = {};
      for (const x of ev.series) if (x.values[i]) { counts[x.key] = x.values[i]; started = true; }
      if (started) srvPoint(t, counts, bytesAt.get(t) || 0);
    });
    dirtyAgg = true;
    schedule();
  } catch (e) { /* the live frames fill the charts */ }
}

function serverSnapshot() {
  const names = [...srv.types].map(([k, arr]) => [k, arr.reduce((a, b) => a + b, 0)])
    .sort((a, b) => b[1] - a[1]).map((x) => x[0]);
  const shown = names.slice(0, MAX_TYPES).sort();
  const values = shown.map((k) => srv.types.get(k).slice());
  if (names.length > MAX_TYPES) {
    const rest = new Array(srv.t.length).fill(0);
    for (const k of names.slice(MAX_TYPES)) srv.types.get(k).forEach((v, i) => { rest[i] += v; });
    shown.push('other');
    values.push(rest);
  }
  return {
    source: 'server', window: '60s',
    rate: { t: srv.t.slice(), types: shown, values }, bytes: { t: srv.t.slice(), values: srv.bytes.slice() },
    top: { path: srv.top.path || [], comm: srv.top.comm || [], uid: srv.top.uid || [] },
    totals: srv.totals,
  };
}

async function startAggregates() {
  liveMode = 'probing';
  backfill();
  const st = await sse('live', '/v1/analytics/live', onLive);
  if (st === 404 || st === 403) { // no analytics here (or none for this token): aggregate here
    liveMode = 'local';
    setStatus('live', 'off'); // replaces the 404/403: not an outage
    sse('agg', '/v1/stream?after=now', onAggEvent);
    startTail();
  }
}

// ---- messages from the page ---------------------------------------------

onmessage = (m) => {
  const d = m.data;
  switch (d.op) {
  case 'start':
    token = d.token || '';
    for (const n of Object.keys(streams)) stop(n);
    tailFilter = d.tail || { type: '', path: '' };
    srv = { t: [], types: new Map(), bytes: [], top: {}, totals: {}, window: '60s' };
    // Until the probe tells, the tail runs its own stream.
    liveMode = 'probing';
    startTail();
    startInsights();
    startAggregates();
    break;
  case 'tail':
    tailFilter = { type: d.type || '', path: d.path || '' };
    startTail();
    break;
  case 'stop':
    for (const n of Object.keys(streams)) stop(n);
    break;
  case 'clock': // the page aligns the worker's clock with its own
    postMessage({ op: 'clock', t: d.t, w: performance.timeOrigin + performance.now() });
    break;
  }
};
