// mr_tl training monitor: polls the JSON API of `python -m mr_tl.monitor` every second and
// appends the new rounds to hand-written SVG charts. No libraries, nothing from the network.
"use strict";
(() => {
  const POLL_MS = 1000;
  const SVGNS = "http://www.w3.org/2000/svg";
  const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                   "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
  // rounds in the mean behind seconds/round and the ETA: the server's (status.recent_rounds)
  const recentRounds = (store) => (store.status && store.status.recent_rounds) || 10;
  const $ = (id) => document.getElementById(id);

  const state = {
    mode: null, root: "", order: [], runs: new Map(), selected: null,
    runsEtag: null, lastOk: 0, error: null, polls: 0, keys: {},
  };

  function newStore(name) {
    return {
      name, summary: null, fetchedVersion: null, etag: null, loaded: false,
      cursor: 0, rounds: [], x: [], raw: [], smooth: [], t: [],
      config: {}, labels: [], status: {}, latest: {}, evaluation: {}, files: "", fileList: [],
      appended: 0,
    };
  }

  // -- small DOM helpers (text goes in as text, never as HTML) -------------------------------

  function h(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") e.className = v;
      else if (k === "style") Object.assign(e.style, v);
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) {
      if (c === undefined || c === null || c === false) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  function s(tag, attrs, text) {
    const e = document.createElementNS(SVGNS, tag);
    for (const [k, v] of Object.entries(attrs || {})) if (v !== undefined && v !== null) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  // -- formatting ----------------------------------------------------------------------------------

  function num(v, digits = 4) {
    if (v === null || v === undefined || Number.isNaN(v)) return "–";
    if (typeof v !== "number") return String(v);
    if (Number.isInteger(v)) return String(v);
    return v.toFixed(digits);
  }

  function short(v) {
    if (!Number.isFinite(v)) return "";
    const a = Math.abs(v);
    if (a >= 1e6) return +(v / 1e6).toPrecision(3) + "M";
    if (a >= 1e4) return +(v / 1e3).toPrecision(3) + "k";
    if (a === 0) return "0";
    if (a < 1e-3) return v.toExponential(1);
    return String(+v.toPrecision(4));
  }

  function duration(sec) {
    if (sec === null || sec === undefined || !Number.isFinite(sec)) return "–";
    sec = Math.max(0, sec);
    if (sec < 10) return sec.toFixed(1) + " s";
    if (sec < 60) return Math.round(sec) + " s";
    const m = Math.floor(sec / 60), r = Math.round(sec % 60);
    if (sec < 3600) return m + "m" + String(r).padStart(2, "0") + "s";
    return Math.floor(sec / 3600) + "h" + String(Math.floor((sec % 3600) / 60)).padStart(2, "0") + "m";
  }

  function shortDuration(sec) {
    return sec < 60 ? short(sec) + "s" : duration(sec);
  }

  // config.json says "epoch", "2epochs", ... or a number of minibatches (0: "epoch", in older runs)
  function freq(v) {
    return v === 0 ? "epoch" : v;
  }

  function describeFrequency(v) {
    if (v === 0 || v === "epoch") return "once per epoch";
    if (typeof v === "string") return `every ${parseInt(v, 10)} epochs`;
    return `every ${v} minibatch${v === 1 ? "" : "es"}`;
  }

  // -- polling ---------------------------------------------------------------------------------------

  async function fetchJSON(url, etag) {
    const opts = {cache: "no-store", headers: {}};
    if (etag) opts.headers["If-None-Match"] = etag;
    const r = await fetch(url, opts);
    if (r.status === 304) return null;
    if (!r.ok) {
      let msg = "HTTP " + r.status;
      try { msg += ": " + (await r.json()).error; } catch (e) { /* not JSON */ }
      throw new Error(msg);
    }
    return {etag: r.headers.get("ETag"), body: await r.json()};
  }

  function applyRuns(body) {
    state.mode = body.mode;
    state.root = body.root;
    const names = body.runs.map((r) => r.name);
    for (const name of [...state.runs.keys()]) if (!names.includes(name)) state.runs.delete(name);
    body.runs.forEach((summary, i) => {
      let store = state.runs.get(summary.name);
      if (!store) { store = newStore(summary.name); state.runs.set(summary.name, store); }
      store.summary = summary;
      store.color = PALETTE[i % PALETTE.length];
    });
    state.order = names;
    const fromHash = decodeURIComponent((location.hash.match(/run=([^&]*)/) || [])[1] || "");
    if (fromHash && state.runs.has(fromHash)) state.selected = fromHash;
    if (!state.selected || !state.runs.has(state.selected)) {
      // the run updated last (the one training now, most likely)
      let best = null;
      for (const st of state.runs.values()) {
        if (!best || (st.summary.status.updated || 0) > (best.summary.status.updated || 0)) best = st;
      }
      state.selected = best ? best.name : null;
    }
  }

  function clearSeries(store) {
    store.cursor = 0; store.rounds = []; store.x = []; store.raw = []; store.smooth = []; store.t = [];
  }

  function push(target, values) {
    for (const v of values) target.push(v);   // no push(...values): long arrays overflow the stack
  }

  async function pollRun(store) {
    if (!store || (store.loaded && store.fetchedVersion === store.summary.version)) return;
    const version = store.summary.version;
    const url = "api/run/" + encodeURIComponent(store.name) + "?after=" + store.cursor + "&points=" + store.x.length;
    const res = await fetchJSON(url, store.etag);
    store.fetchedVersion = version;
    if (!res) return;
    const d = res.body;
    if (d.reset) clearSeries(store);
    if (d.first_point !== store.x.length) {   // out of step: start again from scratch next time
      clearSeries(store); store.etag = null; store.fetchedVersion = null;
      return;
    }
    store.etag = res.etag;
    push(store.x, d.points.iteration);
    push(store.raw, d.points.loss);
    push(store.smooth, d.points.smoothed);
    push(store.t, d.points.time);
    push(store.rounds, d.rounds);
    store.appended += d.rounds.length;
    store.cursor = d.cursor;
    store.config = d.config || {};
    store.labels = d.labels || [];
    store.status = d.status || {};
    store.latest = d.latest || {};
    store.evaluation = d.evaluation || {};
    store.files = d.files;
    store.fileList = d.file_list || [];
    store.loaded = true;
  }

  async function poll() {
    try {
      const res = await fetchJSON("api/runs", state.runsEtag);
      if (res) { state.runsEtag = res.etag; applyRuns(res.body); }
      const wanted = state.mode === "multi" ? state.order : state.order.slice(0, 1);
      await Promise.all(wanted.map((name) => pollRun(state.runs.get(name))));
      state.lastOk = Date.now();
      state.error = null;
    } catch (e) {
      state.error = e.message || String(e);
    }
    state.polls += 1;
    try {
      render();
    } catch (e) {
      console.error(e);
      state.error = "page error: " + e;
      renderLive();
    }
    document.body.dataset.polls = state.polls;
    setTimeout(poll, POLL_MS);
  }

  // -- charts ----------------------------------------------------------------------------------------

  function niceStep(span, count) {
    const raw = span / count;
    const p = Math.pow(10, Math.floor(Math.log10(raw)));
    const f = raw / p;
    return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * p;
  }

  function linearTicks(a, b, count, integer) {
    const step = integer ? Math.max(1, niceStep(b - a, count)) : niceStep(b - a, count);
    const out = [];
    for (let v = Math.ceil(a / step - 1e-9) * step; v <= b + step * 1e-9; v += step) out.push(+v.toPrecision(12));
    return {ticks: out, step};
  }

  function logTicks(a, b) {
    const out = [];
    for (let k = Math.floor(Math.log10(a)); k <= Math.ceil(Math.log10(b)); k++) {
      for (const m of [1, 2, 5]) {
        const v = m * Math.pow(10, k);
        if (v >= a * 0.999 && v <= b * 1.001) out.push(+v.toPrecision(12));
      }
    }
    return out.length > 12 ? out.filter((v) => /^1(e|$)/.test(v.toExponential(0).replace("e+", "e"))) : out;
  }

  function lowerBound(xs, v) {
    let lo = 0, hi = xs.length;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (xs[mid] < v) lo = mid + 1; else hi = mid; }
    return lo;
  }

  function nearest(xs, v) {
    const i = lowerBound(xs, v);
    if (i <= 0) return 0;
    if (i >= xs.length) return xs.length - 1;
    return v - xs[i - 1] <= xs[i] - v ? i - 1 : i;
  }

  // Path through the points; past ~2 points per pixel, min/max per pixel column (same look, fewer nodes).
  function pathData(xs, ys, sx, sy, ok, width) {
    const n = xs.length;
    const parts = [];
    let pen = false;
    const emit = (px, py) => { parts.push((pen ? "L" : "M") + px.toFixed(1) + " " + py.toFixed(1)); pen = true; };
    if (n <= width * 2) {
      for (let i = 0; i < n; i++) {
        if (!ok(ys[i])) { pen = false; continue; }
        emit(sx(xs[i]), sy(ys[i]));
      }
      return {d: parts.join(""), drawn: n};
    }
    let col = null, lo = null, hi = null, first = null, last = null, drawn = 0;
    const flush = () => {
      if (col === null) return;
      const pts = [first, lo, hi, last].sort((a, b) => a[2] - b[2]);
      let prev = null;
      for (const p of pts) if (p !== prev) { emit(col, p[1]); prev = p; drawn++; }
    };
    for (let i = 0; i < n; i++) {
      if (!ok(ys[i])) continue;
      const px = Math.round(sx(xs[i])), py = sy(ys[i]);
      const p = [px, py, i];
      if (px !== col) { flush(); col = px; lo = hi = first = last = p; continue; }
      if (py < lo[1]) lo = p;
      if (py > hi[1]) hi = p;
      last = p;
    }
    flush();
    return {d: parts.join(""), drawn};
  }

  // spec: {title, xLabel, yLabel, logY, yMin, yMax, xFormat, series: [{name, color, x, y, width,
  //        opacity, markers, legend, dash}], points}
  function drawChart(fig, spec) {
    const W = 720, H = 330, m = {l: 62, r: 18, t: 34, b: 46};
    const pw = W - m.l - m.r, ph = H - m.t - m.b;
    const xFormat = spec.xFormat || short;
    const ok = spec.logY ? (v) => Number.isFinite(v) && v > 0 : (v) => v !== null && Number.isFinite(v);
    const svg = s("svg", {viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": spec.title});
    svg.append(s("text", {x: m.l, y: 20, class: "title"}, spec.title));
    fig.dataset.points = String(spec.points);
    fig.dataset.series = String(spec.series.length);
    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    for (const se of spec.series) {
      for (let i = 0; i < se.x.length; i++) {
        if (!ok(se.y[i]) || !Number.isFinite(se.x[i])) continue;
        if (se.x[i] < x0) x0 = se.x[i];
        if (se.x[i] > x1) x1 = se.x[i];
        if (se.y[i] < y0) y0 = se.y[i];
        if (se.y[i] > y1) y1 = se.y[i];
      }
    }
    const tip = h("div", {class: "tooltip"});
    if (x0 === Infinity) {
      svg.append(s("text", {x: W / 2, y: H / 2, "text-anchor": "middle", class: "empty-note"},
                   spec.emptyNote || "waiting for the first round…"));
      fig.replaceChildren(svg, tip);
      return;
    }
    if (spec.yMin !== undefined) y0 = Math.min(y0, spec.yMin);
    if (spec.yMax !== undefined) y1 = Math.max(y1, spec.yMax);
    if (spec.xMin !== undefined) x0 = Math.min(x0, spec.xMin);
    if (x1 === x0) { x1 = x0 + 1; }
    let yt;
    if (spec.logY) {
      if (y1 === y0) { y0 /= 2; y1 *= 2; }
      yt = logTicks(y0, y1);
    } else {
      if (y1 === y0) { y0 -= Math.abs(y0) * 0.1 || 1; y1 += Math.abs(y1) * 0.1 || 1; }
      const {ticks, step} = linearTicks(y0, y1, 6);
      if (spec.yMin === undefined) y0 = Math.floor(y0 / step + 1e-9) * step;
      if (spec.yMax === undefined) y1 = Math.ceil(y1 / step - 1e-9) * step;
      yt = linearTicks(y0, y1, 6).ticks;
      void ticks;
    }
    const ty = spec.logY ? Math.log10 : (v) => v;
    const ly0 = ty(y0), ly1 = ty(y1);
    const sx = (v) => m.l + (v - x0) / (x1 - x0) * pw;
    const sy = (v) => m.t + ph - (ty(v) - ly0) / (ly1 - ly0) * ph;
    const xt = linearTicks(x0, x1, 7, spec.xInteger).ticks;

    const grid = s("g", {class: "grid"}), axis = s("g", {class: "axis"});
    for (const v of yt) {
      const y = sy(v).toFixed(1);
      grid.append(s("line", {x1: m.l, x2: m.l + pw, y1: y, y2: y}));
      axis.append(s("text", {x: m.l - 6, y: +y + 4, "text-anchor": "end", class: "tick"}, short(v)));
    }
    for (const v of xt) {
      const x = sx(v).toFixed(1);
      grid.append(s("line", {x1: x, x2: x, y1: m.t, y2: m.t + ph}));
      axis.append(s("text", {x, y: m.t + ph + 16, "text-anchor": "middle", class: "tick"}, xFormat(v)));
    }
    axis.append(s("path", {d: `M${m.l} ${m.t}V${m.t + ph}H${m.l + pw}`, fill: "none"}));
    axis.append(s("text", {x: m.l + pw / 2, y: H - 6, "text-anchor": "middle"}, spec.xLabel));
    axis.append(s("text", {x: 14, y: m.t + ph / 2, "text-anchor": "middle",
                           transform: `rotate(-90 14 ${m.t + ph / 2})`}, spec.yLabel));
    svg.append(grid, axis);

    const clipId = (fig.id || "c") + "-clip";
    const defs = s("defs");
    const clip = s("clipPath", {id: clipId});
    clip.append(s("rect", {x: m.l - 4, y: m.t - 4, width: pw + 8, height: ph + 8}));
    defs.append(clip);
    svg.append(defs);
    const plot = s("g", {"clip-path": `url(#${clipId})`});
    let drawnTotal = 0;
    for (const se of spec.series) {
      const {d, drawn} = pathData(se.x, se.y, sx, sy, ok, pw);
      drawnTotal += drawn;
      plot.append(s("path", {
        d, fill: "none", stroke: se.color, "stroke-width": se.width || 1.5, "stroke-opacity": se.opacity ?? 1,
        "stroke-dasharray": se.dash, "stroke-linejoin": "round", class: "series",
        "data-name": se.name, "data-points": se.x.length,
      }));
      if (se.markers && se.x.length <= 80) {
        const g = s("g", {fill: se.color});
        for (let i = 0; i < se.x.length; i++) {
          if (!ok(se.y[i])) continue;
          if (se.markers === "square") {
            g.append(s("rect", {x: (sx(se.x[i]) - 3).toFixed(1), y: (sy(se.y[i]) - 3).toFixed(1), width: 6, height: 6}));
          } else {
            g.append(s("circle", {cx: sx(se.x[i]).toFixed(1), cy: sy(se.y[i]).toFixed(1), r: 3.2}));
          }
        }
        plot.append(g);
      }
    }
    fig.dataset.drawn = String(drawnTotal);
    svg.append(plot);

    const legendItems = spec.series.filter((se) => se.legend !== false);
    if (legendItems.length) {
      const lg = s("g", {class: "legend"});
      const lw = Math.min(260, 40 + Math.max(...legendItems.map((se) => String(se.name).length)) * 7);
      const lx = m.l + pw - lw - 6, lineH = 17;
      const shown = legendItems.slice(0, 12);
      lg.append(s("rect", {x: lx, y: m.t + 4, width: lw, height: shown.length * lineH + 8, fill: "#fff",
                           "fill-opacity": 0.85, stroke: "#ddd"}));
      shown.forEach((se, i) => {
        const y = m.t + 4 + 12 + i * lineH;
        lg.append(s("line", {x1: lx + 8, x2: lx + 30, y1: y - 4, y2: y - 4, stroke: se.color,
                             "stroke-width": Math.max(2, se.width || 1.5), "stroke-dasharray": se.dash}));
        lg.append(s("text", {x: lx + 36, y}, se.name));
      });
      svg.append(lg);
    }

    // hover: a vertical line and the nearest value of every series
    const hover = s("g", {class: "hover", visibility: "hidden"});
    const vline = s("line", {y1: m.t, y2: m.t + ph});
    hover.append(vline);
    svg.append(hover);
    const overlay = s("rect", {x: m.l, y: m.t, width: pw, height: ph, fill: "transparent"});
    svg.append(overlay);
    overlay.addEventListener("mousemove", (ev) => {
      const box = svg.getBoundingClientRect();
      const px = (ev.clientX - box.left) * W / box.width;
      const xv = x0 + (px - m.l) / pw * (x1 - x0);
      const lines = [];
      let at = null;
      for (const se of spec.series.filter((q) => q.legend !== false && q.x.length)) {
        const i = nearest(se.x, xv);
        if (at === null) at = se.x[i];
        lines.push(`${se.name}: ${num(se.y[i])}`);
      }
      if (at === null) return;
      vline.setAttribute("x1", sx(at)); vline.setAttribute("x2", sx(at));
      hover.setAttribute("visibility", "visible");
      tip.textContent = `${spec.xName || spec.xLabel}: ${xFormat(at)}\n` + lines.join("\n");
      tip.style.display = "block";
      const fb = fig.getBoundingClientRect();
      const left = ev.clientX - fb.left + 14;
      tip.style.left = (left + 220 > fb.width ? left - 240 : left) + "px";
      tip.style.top = (ev.clientY - fb.top + 10) + "px";
    });
    overlay.addEventListener("mouseleave", () => { hover.setAttribute("visibility", "hidden"); tip.style.display = "none"; });
    fig.replaceChildren(svg, tip);
  }

  // -- one run ----------------------------------------------------------------------------------------

  function card(k, v, sub, attrs) {
    return h("div", Object.assign({class: "card"}, attrs || {}), h("div", {class: "k"}, k),
             h("div", {class: "v"}, v), h("div", {class: "s"}, sub || "\u00a0"));
  }

  function renderCards(store) {
    // seconds per round, rounds left and the ETA are the server's (mr_tl.monitor: one definition)
    const st = store.status, la = store.latest;
    const perRound = st.seconds_per_round ?? null, left = st.rounds_left ?? 0, eta = st.eta_seconds ?? null;
    const ago = st.updated ? (Date.now() / 1000 - st.updated) : null;
    $("cards").replaceChildren(
      card("round", `${st.round} / ${st.rounds ?? "?"}`, `epoch ${st.epoch} / ${st.epochs ?? "?"}`,
           {id: "card-round", "data-round": st.round}),
      card("iteration", String(st.iteration), `${store.x.length} loss points`),
      card("loss", num(la.loss), "smoothed " + num(la.smoothed_loss)),
      card("validation accuracy", num(la.val_accuracy), la.best_val_accuracy === null ? "no validation yet"
        : `best ${num(la.best_val_accuracy)} @ round ${la.best_val_round}`),
      card("train accuracy", num(la.train_accuracy), la.train_loss === null ? "" : "train loss " + num(la.train_loss)),
      card("seconds / round", perRound === null ? "–" : perRound.toFixed(2), `mean of the last ${Math.min(recentRounds(store), store.rounds.length)} rounds`),
      st.state === "stalled"
        ? card("ETA", "–", `stalled: no update for ${duration(ago)}`, {id: "card-eta"})
        : card("ETA", st.state === "finished" ? "done" : duration(eta), `${left} rounds left`, {id: "card-eta"}),
      card("training time", duration(st.elapsed_seconds), ago === null ? "" : `updated ${duration(ago)} ago`),
    );
    const pct = st.rounds ? Math.min(100, 100 * st.round / st.rounds) : 0;
    $("progress").firstElementChild.style.width = (st.state === "finished" ? 100 : pct) + "%";
    const badge = $("run-state");
    badge.textContent = st.state;
    badge.className = "badge " + st.state;
  }

  function configRows(store) {
    const c = store.config || {}, t = c.training || {}, f = c.features || {};
    const rows = [["Training (hyperparameters)"]];
    const order = ["averaging_frequency", "batch_size", "lr", "momentum", "l2", "seed", "outer_optimizer",
                   "block_momentum", "block_lr"];
    for (const k of order.concat(Object.keys(t).filter((k) => !order.includes(k)).sort())) {
      if (k in t) rows.push([k.replace(/_/g, " "), k === "averaging_frequency" ? describeFrequency(t[k]) : t[k]]);
    }
    if (c.recipe) rows.splice(1, 0, ["recipe", c.recipe]);
    const candidates = c.candidates || [];
    if (candidates.length > 1) {
      rows.push(["Candidates (the best on validation is the head)"]);
      for (const k of candidates) {
        rows.push([`candidate ${k.index}`, ["lr", "l2", "momentum", "hidden"].map((n) => `${n} ${k[n]}`).join(", ")]);
      }
    }
    rows.push(["Schedule"]);
    rows.push(["epochs", c.epochs], ["rounds per epoch", c.rounds_per_epoch], ["rounds", c.rounds],
              ["validate every", c.validate_every ? `${c.validate_every} rounds` : "never"],
              ["early stopping", c.early_stopping ? `patience ${c.early_stopping}` : "off"]);
    rows.push(["Workers"]);
    rows.push(["workers", t.workers], ["map tasks", c.tasks], ["runner", c.runner],
              ["examples per worker", (c.worker_examples || []).join(", ")]);
    rows.push(["Features"]);
    rows.push(["inputs", (f.inputs || []).join(", ")], ["dimension", f.dim],
              ["classes", `${f.classes ?? store.labels.length}` + (store.labels.length ? ": " +
                store.labels.slice(0, 12).join(", ") + (store.labels.length > 12 ? ", …" : "") : "")],
              ["train / val / test examples", `${f.train_examples ?? "?"} / ${f.val_examples ?? "?"} / ${f.test_examples ?? "?"}`],
              ["fingerprint", (f.fingerprint || "").slice(0, 16)], ["mr_tl version", c.mr_tl_version]);
    return rows;
  }

  function renderConfig(store) {
    const table = h("table", {id: "config-table"});
    for (const row of configRows(store)) {
      if (row.length === 1) table.append(h("tr", {class: "group"}, h("th", {colspan: 2}, row[0])));
      else if (row[1] !== undefined && row[1] !== null && row[1] !== "") table.append(h("tr", {}, h("th", {}, row[0]), h("td", {}, String(row[1]))));
    }
    $("config").replaceChildren(h("h3", {}, "Configuration"), table);
  }

  function confusionTable(conf) {
    const n = conf.classes.length;
    const dense = n > 25;
    const table = h("table", {class: "confusion" + (dense ? " dense" : ""), "data-classes": n});
    const head = h("tr", {}, h("th", {class: "row"}, "true \\ predicted"));
    for (const c of conf.classes) head.append(dense ? h("th", {title: c}) : h("th", {class: "rot", title: c}, c));
    table.append(head);
    conf.matrix.forEach((row, i) => {
      const total = row.reduce((a, b) => a + b, 0) || 1;
      const tr = h("tr", {}, h("th", {class: "row", title: conf.classes[i]}, dense ? "" : conf.classes[i]));
      row.forEach((v, j) => {
        const frac = v / total;
        tr.append(h("td", {
          title: `true ${conf.classes[i]}, predicted ${conf.classes[j]}: ${v} (${(100 * frac).toFixed(1)}%)`,
          style: {background: `rgba(8, 81, 156, ${(0.06 + 0.94 * frac).toFixed(3)})`, color: frac > 0.5 ? "#fff" : "#123"},
        }, dense ? "" : String(v)));
      });
      table.append(tr);
    });
    return table;
  }

  function renderEvaluation(store) {
    const root = $("evaluation");
    const splits = Object.keys(store.evaluation || {});
    root.dataset.splits = splits.join(",");
    if (!splits.length) {
      root.replaceChildren(h("p", {class: "hint"}, "No evaluation yet: run python -m mr_tl.evaluate --run RUN_DIR FEATURES --split test; it appears here."));
      return;
    }
    const parts = [];
    for (const split of splits) {
      const e = store.evaluation[split];
      const mt = h("table", {class: "eval-metrics", "data-split": split});
      const keys = ["accuracy", "precision", "recall", "f1", "top5_accuracy", "loss", "examples", "rejected_images"];
      for (const k of keys.concat(Object.keys(e.metrics).filter((k) => !keys.includes(k) && k !== "split").sort())) {
        if (k in e.metrics) mt.append(h("tr", {}, h("th", {}, k.replace(/_/g, " ")), h("td", {class: "num"}, num(e.metrics[k]))));
      }
      const box = h("div", {class: "eval-split"}, h("div", {}, h("h3", {}, `Evaluation: ${split} split`), mt));
      if (e.confusion) box.append(h("div", {}, h("h3", {}, "Confusion matrix (row-normalized colour)"), confusionTable(e.confusion)));
      parts.push(box);
      if (e.per_class && e.per_class.length) {
        const pt = h("table", {}, h("tr", {}, ...["class", "precision", "recall", "f1", "support"].map((k) => h("th", {class: k === "class" ? "" : "num"}, k))));
        for (const r of e.per_class) {
          pt.append(h("tr", {}, h("td", {}, r.class), ...["precision", "recall", "f1", "support"].map((k) => h("td", {class: "num"}, num(r[k], 3)))));
        }
        parts.push(h("details", {}, h("summary", {}, `per-class precision / recall / F1 (${e.per_class.length} classes)`), pt));
      }
    }
    root.replaceChildren(...parts);
  }

  function renderRunCharts(store) {
    const logY = $("loss-log").checked;
    drawChart($("loss-chart"), {
      title: "Model score vs iteration", xLabel: "iteration (minibatches per worker)",
      yLabel: "loss (negative log-likelihood)", logY, points: store.x.length, xName: "iteration", xInteger: true,
      series: [
        {name: "score (minibatch loss)", color: "#9ecae1", width: 1, x: store.x, y: store.raw},
        {name: "smoothed", color: "#08519c", width: 2, x: store.x, y: store.smooth},
      ],
    });
    const val = store.rounds.filter((r) => r.val_accuracy !== undefined && r.val_accuracy !== null);
    drawChart($("acc-chart"), {
      title: "Accuracy at each validation round", xLabel: "round", yLabel: "accuracy", yMin: 0, yMax: 1,
      points: val.length, xName: "round", xInteger: true, emptyNote: store.config.validate_every ? "waiting for the first validation round…"
        : "no validation in this run (train --validate-every N)",
      series: [
        {name: "train", color: "#1f77b4", markers: "circle", x: val.map((r) => r.round), y: val.map((r) => r.train_accuracy)},
        {name: "validation", color: "#ff7f0e", markers: "square", x: val.map((r) => r.round), y: val.map((r) => r.val_accuracy)},
      ],
    });
    const rounds = store.rounds.filter((r) => Number.isFinite(r.seconds));
    const recent = recentRounds(store);
    const rolling = rounds.map((_, i) => {
      const w = rounds.slice(Math.max(0, i - recent + 1), i + 1);
      return w.reduce((a, r) => a + r.seconds, 0) / w.length;
    });
    drawChart($("time-chart"), {
      title: "Seconds per round", xLabel: "round", yLabel: "seconds", yMin: 0, points: rounds.length, xName: "round", xInteger: true,
      series: [
        {name: "round time", color: "#6a51a3", width: 1.2, markers: "circle", x: rounds.map((r) => r.round), y: rounds.map((r) => r.seconds)},
        {name: `mean of last ${recent} (ETA basis)`, color: "#d9822b", width: 2, dash: "5 3", x: rounds.map((r) => r.round), y: rolling},
      ],
    });
  }

  function renderRun(store) {
    $("run-title").textContent = `Run ${store.name}`;
    $("run").dataset.run = store.name;
    $("run").dataset.rounds = String(store.rounds.length);
    renderCards(store);
    const key = [store.name, store.x.length, store.rounds.length, $("loss-log").checked, store.status.state].join("|");
    if (state.keys.run !== key) {
      state.keys.run = key;
      renderRunCharts(store);
    }
    const evalKey = store.name + "|" + JSON.stringify(store.evaluation);
    if (state.keys.evaluation !== evalKey) {
      state.keys.evaluation = evalKey;
      renderEvaluation(store);
    }
    const cfgKey = store.name + "|" + JSON.stringify(store.config) + store.labels.length;
    if (state.keys.config !== cfgKey) {
      state.keys.config = cfgKey;
      renderConfig(store);
    }
    $("files").replaceChildren("Files: ", ...store.fileList.map((f) => h("a", {href: store.files + f}, f)));
  }

  // -- several runs -----------------------------------------------------------------------------------

  // [key, header, value of a config, always shown (else only when the runs differ in it)]
  const HYPER = [
    ["averaging_frequency", "avg every", (c) => freq(c.training?.averaging_frequency), true],
    ["workers", "workers", (c) => c.training?.workers, true],
    ["batch_size", "batch", (c) => c.training?.batch_size, true],
    ["lr", "lr", (c) => c.training?.lr, true],
    ["momentum", "momentum", (c) => c.training?.momentum, true],
    ["l2", "l2", (c) => c.training?.l2],
    ["outer_optimizer", "outer opt.", (c) => c.training?.outer_optimizer +
      (c.training?.outer_optimizer === "block-momentum" ? ` (${num(c.training.block_momentum, 3)})` : ""), true],
    ["block_lr", "block lr", (c) => c.training?.block_lr],
    ["seed", "seed", (c) => c.training?.seed],
    ["epochs", "epochs", (c) => c.epochs],
    ["validate_every", "validate every", (c) => c.validate_every],
    ["runner", "runner", (c) => c.runner],
    ["train_examples", "train examples", (c) => c.features?.train_examples],
    ["features", "features", (c) => (c.features?.inputs || []).join(", ")],
  ];

  function renderCompare() {
    const stores = state.order.map((n) => state.runs.get(n)).filter(Boolean);
    const useTime = $("cmp-x").value === "time";
    const raw = $("cmp-raw").checked, logY = $("cmp-log").checked;
    const key = stores.map((st) => `${st.name}:${st.x.length}:${st.rounds.length}`).join(",") + `|${useTime}|${raw}|${logY}`;
    if (state.keys.compare !== key) {
      state.keys.compare = key;
      const series = [];
      for (const st of stores) {
        const xs = useTime ? st.t : st.x;
        if (raw) series.push({name: st.name + " (raw)", color: st.color, width: 0.8, opacity: 0.3, legend: false, x: xs, y: st.raw});
        series.push({name: st.name, color: st.color, width: 2, x: xs, y: st.smooth});
      }
      const xLabel = useTime ? "training time (s, sum of round times)" : "iteration (minibatches per worker)";
      drawChart($("cmp-loss"), {
        title: "Smoothed loss, all runs", xLabel, yLabel: "loss (negative log-likelihood)", logY, series,
        points: stores.reduce((a, st) => a + st.x.length, 0), xName: useTime ? "time" : "iteration", xInteger: !useTime,
        xFormat: useTime ? shortDuration : short,
      });
      const accSeries = stores.map((st) => {
        let elapsed = 0;
        const xs = [], ys = [];
        for (const r of st.rounds) {
          elapsed += Number.isFinite(r.seconds) ? r.seconds : 0;
          if (r.val_accuracy === undefined || r.val_accuracy === null) continue;
          xs.push(useTime ? elapsed : r.iteration);
          ys.push(r.val_accuracy);
        }
        return {name: st.name, color: st.color, width: 2, markers: "circle", x: xs, y: ys};
      });
      drawChart($("cmp-acc"), {
        title: "Validation accuracy, all runs", xLabel, yLabel: "validation accuracy", yMin: 0, yMax: 1,
        series: accSeries, points: accSeries.reduce((a, se) => a + se.x.length, 0), xInteger: !useTime,
        xName: useTime ? "time" : "iteration", xFormat: useTime ? shortDuration : short,
        emptyNote: "no validation round yet (train --validate-every N)",
      });
    }
    renderCompareTable(stores);
  }

  function renderCompareTable(stores) {
    const cols = HYPER.map(([k, label, f, always]) => {
      const differs = new Set(stores.map((st) => String(f(st.summary.config || {})))).size > 1;
      return {k, label, f, differs, shown: always || differs};
    }).filter((col) => col.shown);
    const head = h("tr", {}, h("th", {}, "run"), h("th", {}, "status"), h("th", {class: "num"}, "round"),
      ...cols.map((col) => h("th", {class: col.differs ? "differs" : "", "data-key": col.k}, col.label)),
      ...["iteration", "loss (smoothed)", "val acc", "best val acc", "train acc", "evaluation",
          "s/round", "time", "ETA"].map((k) => h("th", {class: k === "evaluation" ? "" : "num"}, k)));
    const body = h("tbody");
    for (const st of stores) {
      const sm = st.summary, c = sm.config || {}, sta = sm.status, la = sm.latest;
      const evals = Object.entries(sm.evaluation || {}).map(([split, m]) => `${split} ${num(m.accuracy)}`).join(", ");
      const tr = h("tr", {class: st.name === state.selected ? "selected" : "", "data-run": st.name,
                          onclick: () => { state.selected = st.name; location.hash = "run=" + encodeURIComponent(st.name); state.keys = {}; render(); }},
        h("td", {}, h("span", {class: "swatch", style: {background: st.color}}), st.name),
        h("td", {}, h("span", {class: "badge " + sta.state}, sta.state)),
        h("td", {class: "num"}, `${sta.round}/${sta.rounds ?? "?"}`),
        ...cols.map((col) => h("td", {class: col.differs ? "differs" : "", "data-key": col.k}, String(col.f(c) ?? "–"))),
        h("td", {class: "num"}, String(sta.iteration)),
        h("td", {class: "num"}, num(la.smoothed_loss)),
        h("td", {class: "num"}, num(la.val_accuracy)),
        h("td", {class: "num"}, la.best_val_accuracy === null ? "–" : `${num(la.best_val_accuracy)} (r${la.best_val_round})`),
        h("td", {class: "num"}, num(la.train_accuracy)),
        h("td", {}, evals || "–"),
        h("td", {class: "num"}, sta.seconds_per_round === null ? "–" : sta.seconds_per_round.toFixed(2)),
        h("td", {class: "num"}, duration(sta.elapsed_seconds)),
        h("td", {class: "num"}, sta.state === "finished" ? "done" : duration(sta.eta_seconds)),
      );
      body.append(tr);
    }
    $("cmp-table").replaceChildren(h("thead", {}, head), body);
    $("cmp-table").dataset.runs = String(stores.length);
  }

  // -- the page ---------------------------------------------------------------------------------------

  function renderLive() {
    const live = $("live");
    if (state.error) {
      live.dataset.state = "error";
      live.lastChild.textContent = `cannot reach the monitor (${state.error}); retrying every second`;
    } else if (state.lastOk) {
      live.dataset.state = "ok";
      live.lastChild.textContent = "live · polling every second";
    }
  }

  function render() {
    renderLive();
    $("root").textContent = state.root;
    const n = state.order.length;
    const empty = $("empty");
    empty.hidden = !(state.mode !== null && n === 0);
    if (!empty.hidden) {
      empty.textContent = `No training run in ${state.root} yet (a run directory holds config.json). ` +
        `Start one with python -m mr_tl.train … -o ${state.root}/NAME; it will appear here.`;
    }
    $("compare").hidden = !(state.mode === "multi" && n > 0);
    if (!$("compare").hidden) renderCompare();
    const store = state.runs.get(state.selected);
    $("run").hidden = !(store && store.loaded);
    if (store && store.loaded) {
      renderRun(store);
      const st = store.status;
      document.title = `${store.name} · round ${st.round}/${st.rounds ?? "?"} · ${st.state} — mr_tl monitor`;
    }
  }

  for (const id of ["cmp-x", "cmp-raw", "cmp-log", "loss-log"]) $(id).addEventListener("change", render);
  window.addEventListener("hashchange", () => {
    const name = decodeURIComponent((location.hash.match(/run=([^&]*)/) || [])[1] || "");
    if (name && state.runs.has(name)) { state.selected = name; state.keys = {}; render(); }
  });
  window.mrTlMonitor = state;   // for debugging and tests
  poll();
})();
