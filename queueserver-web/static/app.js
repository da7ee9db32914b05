// The live view's page: reads the stream at /ws (its format: the queueserver-web README)
// and shows it. No build step; uPlot is the only library.
'use strict';

(function () {
  const WINDOW = 3000;           // points kept for the plot
  const COLORS = ['#2563eb', '#dc2626', '#059669', '#d97706', '#7c3aed', '#0891b2', '#db2777', '#4b5563'];
  const $ = (id) => document.getElementById(id);

  const view = {
    socket: null,
    state: 'connecting',
    running: true,
    names: [],              // in the snapshot's order
    rows: new Map(),        // name -> { row, valueCell, chip, box }
    values: {},
    seq: null,
    time: null,             // server time (ms) of the newest update
    offset: 0,              // local clock minus server clock, ms
    arrivals: [],           // local times of the updates of the last second
    received: 0,
    dropped: 0,
    maxRate: 60,
    xs: [],                 // plot: server time in seconds
    ys: new Map(),          // plot: name -> values
    ticked: [],
    plot: null,
    plotDirty: true,
    rebuild: true,
    reconnectDelay: 500,
    reconnectAt: 0,
    nextAsk: 1,
    asking: null,
    autoTick: true,
  };
  // `?plot=a,b` ticks these values from the start.
  const asked = new URLSearchParams(location.search).get('plot');
  if (asked) {
    view.ticked = asked.split(',').filter((n) => n);
    view.autoTick = false;
  }
  window.queueserverView = view;

  // ----- the socket -----------------------------------------------------------------

  function connect() {
    setState('connecting', 'connecting…');
    // The scheme the page was loaded with: wss:// behind a TLS-terminating proxy.
    const scheme = location.protocol === 'https:' ? 'wss://' : 'ws://';
    const socket = new WebSocket(scheme + location.host + '/ws');
    view.socket = socket;
    socket.onopen = () => { view.reconnectDelay = 500; };
    socket.onmessage = (event) => {
      let message;
      try { message = JSON.parse(event.data); } catch (e) { return; }
      receive(message);
    };
    socket.onclose = () => {
      if (view.socket !== socket) return;
      view.socket = null;
      view.reconnectAt = Date.now() + view.reconnectDelay;
      setTimeout(connect, view.reconnectDelay);
      view.reconnectDelay = Math.min(view.reconnectDelay * 2, 5000);
    };
  }

  function send(message) {
    if (view.socket && view.socket.readyState === WebSocket.OPEN) {
      view.socket.send(JSON.stringify(message));
      return true;
    }
    return false;
  }

  function receive(m) {
    switch (m.type) {
      case 'hello':
        view.offset = Date.now() - m.server_time;
        view.maxRate = m.max_rate_hz;
        view.running = m.running;
        view.dropped = 0;
        $('dropped').textContent = '0';
        // Nothing is live until this connection's first update.
        view.time = null;
        if (m.names.length) setNames(m.names);
        // The page keeps its chosen rate across reconnections.
        sendRate();
        break;
      case 'update': update(m); break;
      case 'stats': stats(m); break;
      case 'dropped': view.dropped = m.updates; $('dropped').textContent = fmtInt(m.updates); break;
      case 'status': view.running = m.running; if (!m.running) view.stopReason = m.reason; break;
      case 'answer': answer(m); break;
      case 'error': error(m); break;
      case 'rate': break;
    }
  }

  function sendRate() {
    const hz = Math.min(Number($('rate-pick').value), view.maxRate);
    send({ type: 'rate', hz: hz });
  }

  // ----- values -----------------------------------------------------------------------

  function update(m) {
    const names = Object.keys(m.values);
    if (names.length !== view.names.length || names.some((n, i) => n !== view.names[i])) {
      setNames(names);
    }
    view.values = m.values;
    view.seq = m.seq;
    view.time = m.time;
    view.running = true;
    const now = Date.now();
    view.received++;
    view.arrivals.push(now);
    // The plot: one point per update, for every numeric value.
    if (view.xs.length && m.time / 1000 < view.xs[view.xs.length - 1]) clearPlot();
    view.xs.push(m.time / 1000);
    for (const name of view.names) {
      let ys = view.ys.get(name);
      if (!ys) { ys = new Array(view.xs.length - 1).fill(null); view.ys.set(name, ys); }
      const v = m.values[name];
      ys.push(typeof v === 'number' ? v : (typeof v === 'boolean' ? (v ? 1 : 0) : null));
    }
    if (view.xs.length > WINDOW) {
      const extra = view.xs.length - WINDOW;
      view.xs.splice(0, extra);
      for (const ys of view.ys.values()) ys.splice(0, extra);
    }
    if (view.autoTick && view.xs.length === 30) autoTick();
    view.dirty = true;
    view.plotDirty = true;
  }

  // Until the user ticks a box, plot up to three values that move and are not a clock or
  // a counter (not steadily increasing).
  function autoTick() {
    view.autoTick = false;
    const moving = view.names.filter((name) => {
      const ys = view.ys.get(name).slice(-30).filter((y) => y !== null);
      if (ys.length < 2 || ys.every((y) => y === ys[0])) return false;
      return !ys.every((y, i) => i === 0 || y >= ys[i - 1]);
    });
    if (moving.length) {
      view.ticked = moving.slice(0, 3);
      for (const [name, r] of view.rows) r.box.checked = view.ticked.includes(name);
      view.rebuild = true;
      paintChips();
    }
  }

  function clearPlot() {
    view.xs = [];
    view.ys = new Map();
    view.rebuild = true;
  }

  function setNames(names) {
    view.names = names;
    const body = $('values');
    body.textContent = '';
    view.rows.clear();
    const list = $('names');
    list.textContent = '';
    const keep = view.ticked.filter((n) => names.includes(n));
    view.ticked = keep.length ? keep : names.filter((n) => typeof view.values[n] !== 'string').slice(0, 2);
    if (!view.ticked.length) view.ticked = names.slice(0, 2);
    for (const name of names) {
      const row = document.createElement('tr');
      row.dataset.name = name;
      const tick = document.createElement('td');
      tick.className = 'swatch';
      const box = document.createElement('input');
      box.type = 'checkbox';
      box.checked = view.ticked.includes(name);
      box.title = 'plot ' + name;
      box.addEventListener('change', () => {
        view.autoTick = false;
        view.ticked = view.names.filter((n) => view.rows.get(n).box.checked);
        view.rebuild = true;
        paintChips();
      });
      tick.appendChild(box);
      const label = document.createElement('td');
      label.className = 'name';
      const chip = document.createElement('span');
      chip.className = 'chip';
      label.appendChild(chip);
      label.appendChild(document.createTextNode(name));
      const value = document.createElement('td');
      value.className = 'value';
      value.textContent = '–';
      row.append(tick, label, value);
      body.appendChild(row);
      view.rows.set(name, { row, valueCell: value, chip, box });
      const option = document.createElement('option');
      option.value = name;
      list.appendChild(option);
    }
    view.rebuild = true;
    paintChips();
  }

  function paintChips() {
    for (const [name, r] of view.rows) {
      const at = view.ticked.indexOf(name);
      r.chip.style.background = at >= 0 ? COLORS[at % COLORS.length] : 'transparent';
    }
  }

  function fmtValue(v) {
    if (typeof v === 'number') {
      if (Number.isInteger(v)) return String(v);
      const a = Math.abs(v);
      if (a !== 0 && (a < 1e-3 || a >= 1e7)) return v.toExponential(4);
      return v.toFixed(a >= 1000 ? 2 : 5);
    }
    if (v === null || v === undefined) return 'null';
    if (typeof v === 'object') return JSON.stringify(v);
    return String(v);
  }

  function fmtInt(n) { return n === null || n === undefined ? '–' : Number(n).toLocaleString('en-US'); }

  function fmtAge(ms) {
    if (ms < 0) ms = 0;
    if (ms < 1000) return Math.round(ms) + ' ms';
    if (ms < 60000) return (ms / 1000).toFixed(1) + ' s';
    return Math.round(ms / 60000) + ' min';
  }

  // ----- counters -------------------------------------------------------------------

  function stats(m) {
    const s = m.server;
    const set = (id, v) => { $(id).textContent = fmtInt(v); };
    if (s) {
      set('c-published', s.updates_published);
      set('c-overwritten', s.updates_overwritten);
      set('c-delivered', s.updates_delivered);
      set('c-answered', s.requests_answered);
      set('c-consolidated', s.requests_consolidated);
      set('c-reads', s.reads);
    }
    set('v-browsers', m.view.browsers);
    set('v-updates', m.view.updates);
    set('v-asks', m.view.asks);
    view.running = m.view.running;
  }

  // ----- asking -----------------------------------------------------------------------

  $('ask-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const name = $('ask-name').value.trim();
    if (!name) return;
    const id = view.nextAsk++;
    view.asking = { id, name, at: Date.now() };
    if (send({ type: 'ask', id, name })) {
      showAsk('pending', 'asking for ' + name + '…');
    } else {
      showAsk('error', 'not connected');
    }
  });

  function answer(m) {
    if (!view.asking || m.id !== view.asking.id) return;
    const took = Date.now() - view.asking.at;
    const p = $('ask-result');
    p.dataset.seq = m.seq;
    p.dataset.value = m.found ? JSON.stringify(m.value) : '';
    if (m.found) {
      showAsk('answer', m.name + ' = ' + fmtValue(m.value) + '   (snapshot ' + fmtInt(m.seq) + ', ' + took + ' ms)');
    } else {
      showAsk('not-found', m.name + ': not found (snapshot ' + fmtInt(m.seq) + ')');
    }
  }

  function error(m) {
    if (m.id !== undefined && view.asking && m.id === view.asking.id) {
      showAsk('error', m.error);
    } else if (m.id === undefined) {
      console.warn('queueserver view:', m.error);
    }
  }

  function showAsk(state, text) {
    const p = $('ask-result');
    p.dataset.state = state;
    p.textContent = text;
  }

  $('rate-pick').addEventListener('change', sendRate);

  // ----- drawing, once per frame -------------------------------------------------------

  function setState(state, text) {
    if (view.state === state && $('state').textContent === text) return;
    view.state = state;
    const pill = $('state');
    pill.dataset.state = state;
    pill.textContent = text;
  }

  function buildPlot() {
    const box = $('plot');
    if (view.plot) { view.plot.destroy(); view.plot = null; }
    if (typeof uPlot === 'undefined') return;
    const series = [{}].concat(view.ticked.map((name, i) => ({
      label: name,
      stroke: COLORS[i % COLORS.length],
      width: 1.5,
      points: { show: false },
      value: (u, v) => (v === null || v === undefined ? '–' : fmtValue(v)),
    })));
    const opts = {
      width: Math.max(box.clientWidth, 300),
      height: 360,
      series,
      scales: { x: { time: true } },
      axes: [{ stroke: '#6a7687', grid: { stroke: '#eef1f5' } }, { stroke: '#6a7687', grid: { stroke: '#eef1f5' } }],
      legend: { live: true },
      cursor: { drag: { x: false, y: false } },
    };
    view.plot = new uPlot(opts, plotData(), box);
    view.rebuild = false;
  }

  function plotData() {
    return [view.xs].concat(view.ticked.map((n) => view.ys.get(n) || new Array(view.xs.length).fill(null)));
  }

  function frame() {
    const now = Date.now();
    // Values in place.
    if (view.dirty) {
      view.dirty = false;
      for (const [name, r] of view.rows) {
        const text = fmtValue(view.values[name]);
        if (r.valueCell.textContent !== text) r.valueCell.textContent = text;
      }
      $('seq').textContent = fmtInt(view.seq);
      $('v-received').textContent = fmtInt(view.received);
    }
    // Age, rate, state.
    while (view.arrivals.length && view.arrivals[0] < now - 1000) view.arrivals.shift();
    $('rate').textContent = view.arrivals.length + ' /s';
    const age = view.time === null ? null : now - view.offset - view.time;
    $('age').textContent = age === null ? '–' : fmtAge(age);
    if (!view.socket || view.socket.readyState !== WebSocket.OPEN) {
      if (view.socket && view.socket.readyState === WebSocket.CONNECTING) {
        setState('connecting', 'connecting…');
      } else {
        const wait = Math.max(0, Math.ceil((view.reconnectAt - now) / 1000));
        setState('disconnected', 'disconnected · retrying' + (wait ? ' in ' + wait + ' s' : '…'));
      }
    } else if (!view.running) {
      setState('stopped', 'computation stopped');
    } else if (age === null) {
      setState('connected', 'connected · waiting for updates');
    } else if (age > 2000) {
      setState('stale', 'no update for ' + fmtAge(age));
    } else {
      setState('live', 'live');
    }
    // The plot.
    if (view.rebuild && view.names.length) buildPlot();
    else if (view.plotDirty && view.plot) view.plot.setData(plotData());
    view.plotDirty = false;
    requestAnimationFrame(frame);
  }

  window.addEventListener('resize', () => {
    if (view.plot) view.plot.setSize({ width: Math.max($('plot').clientWidth, 300), height: 360 });
  });

  // For tests and curious readers: how many points the plot holds, and how many of its
  // pixels carry the first series' colour.
  view.plotPoints = () => (view.plot ? view.plot.data[0].length : 0);
  view.seriesPixels = () => {
    if (!view.plot || !view.ticked.length) return 0;
    const canvas = view.plot.ctx.canvas;
    const pixels = view.plot.ctx.getImageData(0, 0, canvas.width, canvas.height).data;
    const want = COLORS[0].match(/\w\w/g).map((h) => parseInt(h, 16));
    let count = 0;
    for (let i = 0; i < pixels.length; i += 4) {
      if (pixels[i + 3] > 200 && Math.abs(pixels[i] - want[0]) < 40 && Math.abs(pixels[i + 1] - want[1]) < 40 && Math.abs(pixels[i + 2] - want[2]) < 40) count++;
    }
    return count;
  };

  connect();
  requestAnimationFrame(frame);
})();
