// A training run, live: polls the REST API and redraws the loss curve and evaluation table.
(function () {
  "use strict";
  const root = document.getElementById("run");
  const id = root.dataset.run;
  const api = "/api/v1/training-runs/" + id;
  const points = { train: [], eval: [] };
  let lastMetric = null;
  const FINISHED = ["succeeded", "failed", "cancelled"];
  const $ = (sel) => document.getElementById(sel);

  function text(el, value) { el.textContent = value; }  // never innerHTML: run data is data

  function drawLoss() {
    const svg = $("loss");
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    const all = points.train.concat(points.eval);
    if (!all.length) return;
    text($("loss-note"), points.train.length + " training points" +
      (points.eval.length ? ", " + points.eval.length + " evaluation points" : ""));
    const W = 720, H = 260, L = 48, R = 12, T = 12, B = 28;
    const maxStep = Math.max(1, ...all.map(p => p.step));
    const losses = all.map(p => p.loss);
    let lo = Math.min(...losses), hi = Math.max(...losses);
    if (hi - lo < 1e-9) { hi += 0.5; lo -= 0.5; }
    const x = s => L + (W - L - R) * s / maxStep;
    const y = v => T + (H - T - B) * (1 - (v - lo) / (hi - lo));
    const ns = "http://www.w3.org/2000/svg";
    const add = (name, attrs, content) => {
      const el = document.createElementNS(ns, name);
      for (const k in attrs) el.setAttribute(k, attrs[k]);
      if (content !== undefined) el.textContent = content;
      svg.appendChild(el); return el;
    };
    for (let i = 0; i <= 4; i++) {
      const v = lo + (hi - lo) * i / 4;
      add("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), stroke: "#e3e8ee" });
      add("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end", "font-size": 11, fill: "#5f6b7a" }, v.toFixed(3));
    }
    add("text", { x: W - R, y: H - 6, "text-anchor": "end", "font-size": 11, fill: "#5f6b7a" }, "step " + maxStep);
    const series = [["train", "#2f6fde"], ["eval", "#c23b32"]];
    for (const [split, colour] of series) {
      const pts = points[split];
      if (!pts.length) continue;
      add("polyline", { fill: "none", stroke: colour, "stroke-width": 2,
                        points: pts.map(p => x(p.step) + "," + y(p.loss)).join(" ") });
      for (const p of pts) add("circle", { cx: x(p.step), cy: y(p.loss), r: 2.5, fill: colour });
    }
  }

  function drawEvaluation(run) {
    const table = $("evaluation");
    while (table.rows.length > 1) table.deleteRow(1);
    const ev = run.evaluation || {};
    const before = ev.before || {}, after = ev.after || {};
    const keys = Array.from(new Set(Object.keys(before).concat(Object.keys(after))))
      .filter(k => typeof (after[k] ?? before[k]) === "number").sort();
    for (const k of keys) {
      const row = table.insertRow();
      const b = before[k], a = after[k];
      [k, b, a, (typeof a === "number" && typeof b === "number") ? a - b : null].forEach((v, i) => {
        text(row.insertCell(), i === 0 ? v : (typeof v === "number" ? v.toFixed(4) : "—"));
      });
    }
    const gen = ev.generation;
    if (gen && gen.prompts) {
      text($("generation"), "Generation: " + gen.prompts + " held-out prompts judged by rule" +
        (gen.judge && gen.judge.rule ? " (" + gen.judge.rule + ")" : "") + "; wins " + (gen.wins ?? "?") + ", losses " +
        (gen.losses ?? "?") + ", ties " + (gen.ties ?? "?") + ".");
    }
  }

  async function poll() {
    try {
      const run = await (await fetch(api, { credentials: "same-origin" })).json();
      text($("status"), run.status); text($("stage"), run.stage || "");
      text($("error"), run.error || "");
      const progress = run.progress || {};
      if (progress.total) {
        $("bar").style.width = Math.round(100 * progress.fraction) + "%";
        text($("steps"), progress.done + " / " + progress.total + " steps");
      }
      text($("winrate"), run.win_rate == null ? "—" : Math.round(100 * run.win_rate) + "%");
      const url = api + "/metrics" + (lastMetric ? "?after=" + lastMetric : "");
      const fresh = await (await fetch(url, { credentials: "same-origin" })).json();
      for (const m of fresh) {
        lastMetric = m.id;
        if (m.loss != null && points[m.split]) points[m.split].push({ step: m.step, loss: m.loss });
      }
      if (fresh.length) drawLoss();
      drawEvaluation(run);
      if (!FINISHED.includes(run.status)) setTimeout(poll, 2000);
    } catch (err) {
      setTimeout(poll, 5000);
    }
  }
  poll();
})();
