// app.js is the dashboard page: it asks for a token when the server wants
// one (kept in sessionStorage, sent as a Bearer header), starts the
// stream worker (stream.js), and draws what the worker sends at most once
// per animation frame. Status panels are polled every POLL_MS.
//
// Every value from the server is shown with textContent, never as HTML:
// paths, process names and messages are other people's bytes.
//
// window.__semprop is a hook for tests and the curious: shown maps event
// ids to the time (performance.timeOrigin + performance.now(), ms since
// the epoch) of the first frame after their row was drawn; timing has the
// stages of each (read by the worker, handed to the page, in the DOM, on
// screen), the worker's times moved onto the page's clock (workerSkew:
// a worker's time origin may differ from the page's by tens of ms);
// measureFrames records frame times.
(() => {
  'use strict';

  const POLL_MS = Math.max(250, Number(document.querySelector('meta[name="semprop-poll-ms"]').content) || 2000);
  const TAIL_ROWS = 200;
  const TAIL_ADD_MAX = 50; // rows added per frame; older ones in a burst are skipped
  const BUSY_MS = 50;      // a burst's tail is drawn at most 20 times a second
  const CHART_MS = 250;    // charts and top lists at most 4 times a second
  const INSIGHT_ROWS = 100;
  const SHOWN_MAX = 20000;
  const KEY = 'semprop.token';
  const $ = (id) => document.getElementById(id);

  const hook = {
    shown: new Map(), timing: new Map(), lastShown: null, updates: 0, renders: 0, skipped: 0, mode: '',
    workerSkew: 0, workerSkewRTT: Infinity,
    now: () => performance.timeOrigin + performance.now(),
    measureFrames, ready: false, pendingSizes: () => ({ tail: pending.tail.length, insights: pending.insights.length }), events: 0, tailReceived: 0, cspViolations: [],
  };
  window.__semprop = hook;
  document.addEventListener('securitypolicyviolation', (e) => hook.cspViolations.push(e.violatedDirective + ' ' + e.blockedURI));

  let token = sessionStorage.getItem(KEY) || '';
  let worker = null;
  let pending = { tail: [], insights: [], agg: null, statuses: {}, dropped: 0 };
  let raf = 0;
  let lastTail = 0;
  let lastChart = 0;
  let pollTimer = 0;
  const streamState = {};
  hook.streams = streamState;

  // ---- auth ---------------------------------------------------------------

  function showLogin(why) {
    $('login-why').textContent = why;
    $('login').hidden = false;
    $('panels').hidden = true;
    $('token').focus();
  }

  $('login-form').addEventListener('submit', (e) => {
    e.preventDefault();
    token = $('token').value.trim();
    sessionStorage.setItem(KEY, token);
    $('token').value = '';
    $('login').hidden = true;
    $('panels').hidden = false;
    start();
  });

  $('logout').addEventListener('click', () => {
    sessionStorage.removeItem(KEY);
    token = '';
    stopAll();
    showLogin('Token forgotten. Enter a token to connect again.');
  });

  function headers() { return token ? { Authorization: 'Bearer ' + token } : {}; }

  async function getJSON(url) {
    const res = await fetch(url, { headers: headers(), cache: 'no-store' });
    let body = null;
    try { body = await res.json(); } catch (e) { /* empty */ }
    return { status: res.status, body };
  }

  // ---- lifecycle ----------------------------------------------------------

  function stopAll() {
    if (worker) { worker.terminate(); worker = null; }
    clearTimeout(pollTimer);
    pollTimer = 0;
  }

  function tailFilter() { return { type: $('tail-type').value.trim(), path: $('tail-path').value.trim() }; }

  function start() {
    stopAll();
    $('logout').hidden = !token;
    worker = new Worker('stream.js');
    worker.onmessage = (m) => {
      const d = m.data;
      const at = hook.now();
      if (d.op === 'clock') { // the best of a few round trips
        if (at - d.t < hook.workerSkewRTT) {
          hook.workerSkewRTT = at - d.t;
          hook.workerSkew = d.w - (d.t + at) / 2;
        }
        return;
      }
      hook.updates++;
      if (d.tail) for (const x of d.tail) { x.msgAt = at; x.readAt -= hook.workerSkew; }
      if (d.tail) {
        pending.tail.push(...d.tail);
        pending.dropped += d.tailDropped || 0;
        hook.tailReceived += d.tail.length + (d.tailDropped || 0);
        // No frames (a hidden tab): keep only what one frame would draw.
        if (pending.tail.length > TAIL_ADD_MAX) {
          pending.dropped += pending.tail.length - TAIL_ADD_MAX;
          pending.tail.splice(0, pending.tail.length - TAIL_ADD_MAX);
        }
      }
      if (d.insights) {
        pending.insights.push(...d.insights);
        if (pending.insights.length > INSIGHT_ROWS) pending.insights.splice(0, pending.insights.length - INSIGHT_ROWS);
      }
      if (d.agg) pending.agg = d.agg;
      Object.assign(pending.statuses, d.statuses);
      hook.mode = d.mode;
      hook.work = d.work;
      if (!raf) raf = requestAnimationFrame(render);
    };
    worker.postMessage({ op: 'start', token, tail: tailFilter() });
    hook.workerSkewRTT = Infinity;
    const w = worker;
    for (let i = 0; i < 5; i++) setTimeout(() => { if (w === worker) w.postMessage({ op: 'clock', t: hook.now() }); }, 50 + 200 * i);
    poll();
  }

  $('tail-form').addEventListener('submit', (e) => {
    e.preventDefault();
    $('tail-error').textContent = '';
    delete streamState.tail;
    clearRows($('tail'));
    if (worker) worker.postMessage(Object.assign({ op: 'tail' }, tailFilter()));
  });

  // ---- rendering ----------------------------------------------------------

  function render() {
    raf = 0;
    hook.renders++;
    const p = pending;
    pending = { tail: [], insights: [], agg: null, statuses: {}, dropped: 0 };
    const now = performance.now();
    // A few events are drawn at once; a burst at most every BUSY_MS, and
    // the charts at most every CHART_MS: the frames stay short.
    let later = 0;
    if (p.tail.length > 20 && now - lastTail < BUSY_MS) {
      pending.tail = p.tail.slice(-TAIL_ADD_MAX);
      pending.dropped = p.dropped + p.tail.length - pending.tail.length;
      p.tail = [];
      later = lastTail + BUSY_MS - now;
    }
    if (p.agg && now - lastChart < CHART_MS) {
      pending.agg = p.agg;
      p.agg = null;
      later = Math.min(later || Infinity, lastChart + CHART_MS - now);
    }
    // New tail rows and insights go on screen in a frame of their own:
    // the charts (the costly part of a frame) wait for the next one.
    if (p.agg && (p.tail.length || p.insights.length)) {
      pending.agg = p.agg;
      p.agg = null;
      if (!raf) raf = requestAnimationFrame(render);
    }
    if (later) setTimeout(() => { if (!raf) raf = requestAnimationFrame(render); }, later);
    const shownIds = [];
    renderStatuses(p.statuses);
    if (p.tail.length && !$('tail-pause').checked) {
      lastTail = now;
      renderTail(p.tail, shownIds);
      hook.skipped += p.dropped;
    }
    if (p.insights.length) renderInsights(p.insights, shownIds);
    if (p.agg) {
      lastChart = now;
      renderAgg(p.agg);
    }
    if (shownIds.length) {
      // The rows are in the DOM; they are on screen by the next frame.
      const drawn = hook.now();
      requestAnimationFrame(() => {
        const t = hook.now();
        for (const [id, seq, readAt, msgAt] of shownIds) {
          if (id !== undefined && !hook.shown.has(id)) {
            hook.shown.set(id, t);
            hook.timing.set(id, { read: readAt, message: msgAt, drawn, painted: t });
          }
          if (!hook.lastShown || seq > hook.lastShown.seq) hook.lastShown = { id, seq, at: t };
        }
        for (const m of [hook.shown, hook.timing]) {
          let n = m.size - SHOWN_MAX;
          for (const k of m.keys()) { if (n-- <= 0) break; m.delete(k); }
        }
      });
    }
  }

  function renderStatuses(st) {
    for (const [name, s] of Object.entries(st)) {
      if (!s) continue;
      streamState[name] = s;
      if (s.status === 401) {
        stopAll();
        showLogin(token ? 'The server refused this token: ' + s.message : 'This server needs a token.');
        return;
      }
      if (name === 'tail' && s.state === 'error') $('tail-error').textContent = s.message;
    }
    const states = Object.values(streamState).map((s) => s.state);
    const conn = $('conn');
    const forbidden = Object.values(streamState).find((s) => s.status === 403);
    if (forbidden) {
      conn.textContent = 'forbidden';
      conn.className = 'pill down';
      conn.title = forbidden.message;
    } else if (states.includes('live')) {
      conn.textContent = 'live';
      conn.className = 'pill live';
      conn.title = '';
    } else if (states.includes('down') || states.includes('error')) {
      conn.textContent = 'reconnecting';
      conn.className = 'pill down';
    }
    hook.ready = states.includes('live');
  }

  function cell(tr, text, cls) {
    const td = document.createElement('td');
    td.textContent = text === undefined || text === null ? '' : String(text);
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  }

  function clearRows(table) {
    const tb = table.tBodies[0];
    while (tb.firstChild) tb.removeChild(tb.firstChild);
  }

  function clock(t) { return typeof t === 'string' && t.length >= 23 ? t.slice(11, 23) : (t || ''); }

  const TAIL_CLASSES = ['num', '', '', '', '', 'num', 'num'];

  // renderTail puts the newest events on top, reusing the oldest rows:
  // no elements are made or dropped once the table is full.
  function renderTail(events, shownIds) {
    const tb = $('tail').tBodies[0];
    const from = Math.max(0, events.length - TAIL_ADD_MAX);
    hook.skipped += from;
    const frag = document.createDocumentFragment();
    for (let i = events.length - 1; i >= from; i--) { // newest first
      const e = events[i];
      let tr;
      if (tb.rows.length && tb.rows.length + frag.childNodes.length >= TAIL_ROWS) {
        tr = tb.rows[tb.rows.length - 1];
      } else {
        tr = document.createElement('tr');
        for (const c of TAIL_CLASSES) {
          const td = document.createElement('td');
          if (c) td.className = c;
          tr.appendChild(td);
        }
      }
      const td = tr.cells;
      td[0].textContent = text(e.seq);
      td[1].textContent = clock(e.time);
      td[2].textContent = text(e.type);
      td[3].textContent = text(e.subject);
      td[3].title = text(e.subject);
      td[4].textContent = text(e.comm);
      td[5].textContent = text(e.uid);
      td[6].textContent = text(e.bytes);
      frag.appendChild(tr);
      shownIds.push([e.id, e.seq, e.readAt, e.msgAt]);
    }
    tb.insertBefore(frag, tb.firstChild);
  }

  function text(v) { return v === undefined || v === null ? '' : String(v); }

  function renderInsights(items, shownIds) {
    const tb = $('insights').tBodies[0];
    const frag = document.createDocumentFragment();
    for (let i = items.length - 1; i >= 0; i--) {
      const e = items[i];
      const tr = document.createElement('tr');
      const kind = e.type.startsWith('semprop.insight.') ? e.type.slice(16) : (e.rule ? 'rule ' + e.rule : e.type);
      if (e.severity) tr.className = 'sev-' + e.severity;
      cell(tr, clock(e.time));
      cell(tr, kind);
      const m = cell(tr, e.message || e.subject);
      m.title = e.subject || '';
      frag.appendChild(tr);
      shownIds.push([e.id, e.seq]);
    }
    tb.insertBefore(frag, tb.firstChild);
    while (tb.rows.length > INSIGHT_ROWS) tb.deleteRow(-1);
    $('insights-empty').hidden = tb.rows.length > 0;
  }

  // ---- charts -------------------------------------------------------------

  const palette = ['#2f6fde', '#e0782f', '#1f8a4c', '#c8322b', '#8a4fd0', '#0e9aa7', '#b08a00', '#d14ea1', '#888'];
  const charts = {};

  function fmtNum(v) {
    if (v == null) return '';
    const a = Math.abs(v);
    const unit = (d, u) => { const x = v / d; return (Math.abs(x) >= 100 ? x.toFixed(0) : x.toFixed(1)) + u; };
    if (a >= 1e9) return unit(1e9, 'G');
    if (a >= 1e6) return unit(1e6, 'M');
    if (a >= 1e3) return unit(1e3, 'k');
    return a >= 10 || v === 0 ? v.toFixed(0) : v.toFixed(1);
  }

  function chart(id, names, data) {
    const el = $(id);
    const key = names.join('\u0000');
    let c = charts[id];
    if (c && c.key !== key) { c.plot.destroy(); c = null; }
    if (!c) {
      const opts = {
        width: Math.max(200, el.clientWidth), height: 180,
        series: [{}].concat(names.map((n, i) => ({
          label: n, stroke: palette[i % palette.length], width: 1.5,
          fill: names.length === 1 ? palette[0] + '22' : undefined,
          value: (u, v) => fmtNum(v),
        }))),
        axes: [{ incrs: [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600] }, { values: (u, vals) => vals.map(fmtNum), size: 60 }],
        scales: { y: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] } },
        legend: { live: false },
        cursor: { drag: { x: false, y: false } },
      };
      c = { key, plot: new uPlot(opts, data, el) };
      charts[id] = c;
      return;
    }
    c.plot.setData(data);
  }

  window.addEventListener('resize', () => {
    for (const [id, c] of Object.entries(charts)) c.plot.setSize({ width: Math.max(200, $(id).clientWidth), height: 180 });
  });

  function renderAgg(a) {
    if (a.rate && a.rate.t.length) {
      const names = a.rate.types.length ? a.rate.types : ['events'];
      const vals = a.rate.types.length ? a.rate.values : [a.rate.t.map(() => 0)];
      chart('chart-rate', names, [a.rate.t].concat(vals));
    }
    if (a.bytes && a.bytes.t.length) {
      chart('chart-bytes', ['bytes written'], [a.bytes.t, a.bytes.values]);
      $('bytes-unit').textContent = a.source === 'server' ? 'bytes/s, 5 s average' : 'bytes/s';
    }
    if (a.top) {
      topTable('top-path', a.top.path);
      topTable('top-comm', a.top.comm);
      topTable('top-uid', a.top.uid);
      $('top-window').textContent = 'last ' + (a.window || '60s');
    }
    $('mode').textContent = a.source === 'server' ? 'aggregates: server analytics' : 'aggregates: computed in this page';
    const t = a.totals || {};
    if (t.events != null) hook.events = t.events;
    const parts = [];
    if (t.events != null) parts.push(fmtNum(t.events) + ' events seen');
    if (t.rate != null) parts.push(fmtNum(t.rate) + ' ev/s');
    if (t.bytes != null) parts.push(fmtNum(t.bytes) + 'B written');
    if (t.lagMs != null) parts.push('lag ' + t.lagMs + ' ms');
    $('totals').textContent = parts.join(' · ');
  }

  const topKeys = {};

  function topTable(id, items) {
    items = items || [];
    const sig = JSON.stringify(items);
    if (topKeys[id] === sig) return;
    topKeys[id] = sig;
    const table = $(id);
    clearRows(table);
    const tb = table.tBodies[0];
    const max = items.reduce((m, x) => Math.max(m, x.count), 1);
    for (const it of items) {
      const tr = document.createElement('tr');
      let k;
      if (id === 'top-path') { // long paths: keep their end (the file) in sight
        k = cell(tr, '', 'key path');
        const span = document.createElement('span');
        span.textContent = it.key;
        k.appendChild(span);
      } else {
        k = cell(tr, it.key, 'key');
      }
      k.title = it.key;
      const bar = document.createElement('span');
      bar.style.width = (100 * it.count / max).toFixed(1) + '%';
      cell(tr, '', 'bar').appendChild(bar);
      cell(tr, fmtNum(it.count), 'num');
      cell(tr, it.bytes ? fmtNum(it.bytes) + 'B' : '', 'num');
      tb.appendChild(tr);
    }
  }

  // ---- status panels (polled) ---------------------------------------------

  function kv(id, rows, note) {
    const table = $(id);
    clearRows(table);
    const tb = table.tBodies[0];
    for (const [k, v, bad] of rows) {
      const tr = document.createElement('tr');
      cell(tr, k);
      cell(tr, v, bad ? 'bad' : '');
      tb.appendChild(tr);
    }
    $(id + '-note').textContent = note || '';
  }

  async function poll() {
    try {
      const st = await getJSON('/v1/status');
      if (st.status === 200 && st.body) {
        renderStatusPanels(st.body);
      } else if (st.status === 403) {
        const subs = await getJSON('/v1/subscriptions');
        const cons = subs.status === 200 && subs.body ? (subs.body.subscriptions || []) : [];
        const rows = Array.isArray(cons) ? cons.map((c) => {
          const name = (c.spec && c.spec.name) || c.name;
          const info = c.info || {};
          return ['consumer ' + name, 'lag ' + (info.lag || 0) + ', pending ' + (info.pending || 0), (info.lag || 0) > 0];
        }) : [];
        kv('lag', rows, rows.length ? 'your durable consumers' : 'no durable consumers of this token');
        kv('capture', [], 'needs an admin token');
        kv('cluster', [], 'needs an admin token');
      }
    } catch (e) { /* the stream status shows the outage */ }
    if (worker) pollTimer = setTimeout(poll, POLL_MS);
  }

  function renderStatusPanels(s) {
    const lag = [];
    for (const x of s.subscriptions || []) {
      lag.push(['stream ' + (x.name || x.id) + ' (' + x.policy + ')', x.depth + '/' + x.capacity + ' queued, ' + x.dropped + ' dropped',
        x.dropped > 0 || x.depth >= x.capacity]);
    }
    for (const c of s.consumers || []) {
      lag.push(['consumer ' + c.name + (c.open ? '' : ' (closed)'), 'lag ' + c.lag + ', pending ' + c.pending + ', dead ' + c.dead_lettered,
        c.lag > 1000 || c.dead_lettered > 0]);
    }
    kv('lag', lag, lag.length ? '' : 'no live subscriptions or durable consumers');

    const cap = [];
    const j = s.journal || {};
    cap.push(['journal', 'seq ' + j.last_seq + ' (durable ' + j.durable_seq + ')' + (j.no_space ? ', DISK FULL' : ''), !!j.no_space]);
    if (s.ingest) cap.push(['ingest', fmtNum(s.ingest.per_second) + ' ev/s']);
    if (j.fsync_p99_ms != null) cap.push(['fsync p99', j.fsync_p99_ms.toFixed(2) + ' ms']);
    for (const c of s.captures || []) {
      cap.push(['tree ' + c.tree, (c.mode || '') + (c.mount ? '+fuse' : '') + ': ' + fmtNum(c.events) + ' events, ' +
        c.overflows + ' overflows, ' + c.lost + ' lost', c.overflows > 0 || c.lost > 0]);
    }
    kv('capture', cap, (s.captures || []).length ? '' : 'no capture trees (events come from publishers only)');

    const cl = s.cluster;
    if (!cl) {
      kv('cluster', [['node', 'standalone']], 'not in a cluster');
    } else {
      const rows = [['this node', cl.id + ' (' + cl.state + ')'], ['leader', cl.leader || 'none', !cl.leader],
        ['ready', cl.ready ? 'yes' : 'no: ' + (cl.reason || ''), !cl.ready]];
      for (const m of cl.members || []) {
        const off = m.offset_ns ? ', clock ' + (m.offset_ns / 1e6).toFixed(1) + '±' + (m.offset_error_ns / 1e6).toFixed(1) + ' ms' : '';
        rows.push(['member ' + m.id + (m.leader ? ' ★' : '') + (m.self ? ' (self)' : ''), m.suffrage + ', lag ' + m.lag + off, m.lag > 100]);
      }
      kv('cluster', rows, '');
    }
  }

  // ---- frame measurement (tests, diagnostics) -----------------------------

  // measureFrames records the time between animation frames for ms
  // milliseconds and the long tasks (>50 ms) meanwhile.
  function measureFrames(ms) {
    return new Promise((resolve) => {
      const deltas = [];
      let long = 0, longMax = 0;
      let obs = null;
      try {
        obs = new PerformanceObserver((list) => {
          for (const e of list.getEntries()) { long++; longMax = Math.max(longMax, e.duration); }
        });
        obs.observe({ type: 'longtask' });
      } catch (e) { obs = null; }
      const end = performance.now() + ms;
      let prev = 0;
      const step = (t) => {
        if (prev) deltas.push(t - prev);
        prev = t;
        if (t < end) { requestAnimationFrame(step); return; }
        if (obs) obs.disconnect();
        const s = deltas.slice().sort((a, b) => a - b);
        const q = (p) => (s.length ? s[Math.min(s.length - 1, Math.floor(p * s.length))] : 0);
        resolve({ frames: s.length, p50: q(0.5), p99: q(0.99), max: s.length ? s[s.length - 1] : 0, longTasks: long, longMax });
      };
      requestAnimationFrame(step);
    });
  }

  // ---- go -----------------------------------------------------------------
  start();
})();
