// Winnow annotation workbench: keyboard first, no framework, no build step.
// Data from the API is inserted as text; only the *_html fields, which the server renders
// from Markdown and sanitises with nh3, are inserted as HTML.
(() => {
  "use strict";
  const config = JSON.parse(document.getElementById("bench-config").textContent);
  const csrf = document.querySelector("[name=csrfmiddlewaretoken]").value;
  const bench = document.getElementById("bench");
  const questions = config.questions;
  const hasPairwise = questions.some((q) => q.kind === "pairwise");
  const PAIR_SCALE = [["a", "much"], ["a", "clear"], ["a", "slight"], ["tie", null],
                      ["b", "slight"], ["b", "clear"], ["b", "much"]];
  const PAIR_LABELS = ["A much better", "A clearly better", "A slightly better", "Tie",
                       "B slightly better", "B clearly better", "B much better"];

  let current = null;          // the item on screen
  let prefetch = null;         // a promise of the next item (claimed while this one is judged)
  let state = {};              // answers being built, per question name
  let cursor = {};             // focused cell per question name
  let active = 0;              // index of the active question
  let shownAt = 0;
  let diffView = true;

  // -- talking to the API ----------------------------------------------------------------
  async function api(path, body, method = "POST") {
    const response = await fetch(config.api + path, {
      method, credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf, Accept: "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const data = response.status === 204 ? null : await response.json().catch(() => null);
    if (!response.ok) {
      const error = new Error((data && data.detail) || response.statusText);
      error.status = response.status;
      throw error;
    }
    return data;
  }

  async function withRetry(call, tries = 3) {
    for (let attempt = 1; ; attempt++) {
      try { return await call(); } catch (error) {
        // Only network failures are retried; the client key makes a retried submit safe.
        if (error.status || attempt >= tries) throw error;
        await new Promise((r) => setTimeout(r, 400 * attempt));
      }
    }
  }

  const claim = (holding) => api("next", { holding, render: true });
  const clientKey = () => (window.crypto && crypto.randomUUID ? crypto.randomUUID()
    : `${Date.now()}-${Math.random().toString(36).slice(2)}`);

  async function refreshProgress() {
    try {
      const p = await api("progress", undefined, "GET");
      document.querySelector("#progress > span").style.width = `${p.percent}%`;
      document.getElementById("progress-text").textContent =
        `you: ${p.mine} · project: ${p.annotations_done}/${p.annotations_wanted} (${p.percent}%)`;
    } catch (error) { /* the bar is a nicety; the work goes on */ }
  }

  // -- building the page ------------------------------------------------------------------
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (key === "class") node.className = value;
      else if (key === "html") node.innerHTML = value;      // server-sanitised HTML only
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value);
    }
    for (const child of children) if (child) node.append(child);
    return node;
  }
  const kbd = (text) => el("kbd", { text });
  const letter = (index) => (hasPairwise ? "AB"[index] : String(index + 1));

  function freshState(item) {
    state = {}; cursor = {}; active = 0;
    for (const q of questions) {
      cursor[q.name] = 0;
      if (q.kind === "rating") state[q.name] = {};
      if (q.kind === "binary") state[q.name] = { labels: {}, reasons: {} };
      if (q.kind === "ranking") state[q.name] = { ranks: {}, allBad: false };
      if (q.kind === "pairwise") state[q.name] = { scale: null };
      if (q.kind === "edit") state[q.name] = { text: item.responses[0] ? item.responses[0].text : "" };
      if (q.kind === "comment") state[q.name] = { text: "" };
    }
    if (item.previous_answers) prefill(item.previous_answers);
  }

  function prefill(answers) {  // after an undo the page shows what was submitted
    for (const q of questions) {
      const a = answers[q.name];
      if (a == null) continue;
      if (q.kind === "rating") for (const c of a) state[q.name][`${c.response}|${c.aspect || q.aspects[0]}`] = c.value;
      if (q.kind === "binary") for (const c of a) { state[q.name].labels[c.response] = c.label; state[q.name].reasons[c.response] = c.reason || ""; }
      if (q.kind === "ranking") {
        state[q.name].allBad = !!a.all_bad;
        (a.ranking || []).forEach((g, i) => (Array.isArray(g) ? g : [g]).forEach((r) => { state[q.name].ranks[r] = i + 1; }));
      }
      if (q.kind === "pairwise") {
        const index = PAIR_SCALE.findIndex(([c, s]) => c === a.choice && (s === a.strength || !q.strengths));
        state[q.name].scale = index >= 0 ? index : PAIR_SCALE.findIndex(([c]) => c === a.choice);
      }
      if (q.kind === "edit") state[q.name].text = a.text;
      if (q.kind === "comment") state[q.name].text = typeof a === "string" ? a : a.text || "";
    }
  }

  function cellsOf(q) {
    if (q.kind === "rating") return current.responses.flatMap((r, i) => q.aspects.map((a) => ({ response: r.id, index: i, aspect: a })));
    if (q.kind === "binary" || q.kind === "ranking") return current.responses.map((r, i) => ({ response: r.id, index: i }));
    return [];
  }

  function focusedResponse() {
    const q = questions[active];
    const cells = cellsOf(q);
    return cells.length ? cells[Math.min(cursor[q.name], cells.length - 1)].response : null;
  }

  function render() {
    bench.replaceChildren();
    const record = current.record;
    const prompt = el("div", { class: "card prompt" }, el("div", { class: "label", text: "Prompt" }));
    for (const turn of record.history_html || []) {
      prompt.append(el("div", { class: "muted small", text: turn.role }), el("div", { class: "rendered", html: turn.html }));
    }
    prompt.append(el("div", { class: "rendered", id: "prompt", html: record.prompt_html }));
    if (record.context_html) prompt.append(el("div", { class: "label", text: "Context", style: "margin-top:.6rem" }),
                                           el("div", { class: "rendered", html: record.context_html }));
    bench.append(prompt);

    const focus = focusedResponse();
    const pair = questions.find((q) => q.kind === "pairwise");
    const pairChoice = pair && state[pair.name].scale != null ? PAIR_SCALE[state[pair.name].scale][0] : null;
    const list = el("div", { class: `responses ${hasPairwise ? "side" : ""}` });
    current.responses.forEach((r, i) => {
      const chosen = pairChoice && ((pairChoice === "a" && i === 0) || (pairChoice === "b" && i === 1));
      const card = el("div", { class: `card response ${r.id === focus ? "focus" : ""} ${chosen ? "chosen" : ""}`, "data-response": r.id },
        el("div", { class: "label", text: `Response ${letter(i)}` }));
      if (hasPairwise && diffView && r.diff_html != null) card.append(el("div", { class: "diff", html: r.diff_html }));
      else card.append(el("div", { class: "rendered", html: r.html }));
      list.append(card);
    });
    const panel = el("div", { class: "questions" });
    questions.forEach((q, qi) => panel.append(renderQuestion(q, qi)));
    // Pairwise: the two responses side by side, questions below. Otherwise responses on the
    // left and the questions beside them, so the controls stay in view.
    if (hasPairwise) bench.append(list, panel);
    else bench.append(el("div", { class: "workarea" }, list, el("div", { class: "panel-col" }, panel)));
    bench.append(el("div", { class: "actions" },
      el("button", { class: "primary", id: "btn-submit", onclick: submit }, kbd("Enter"), " Submit"),
      el("button", { id: "btn-skip", onclick: skip }, kbd("S"), " Skip"),
      el("button", { id: "btn-undo", onclick: undo }, kbd("U"), " Undo last"),
      el("span", { class: "status", id: "status", text: hasPairwise ? "D toggles differences / formatted text" : "" })));
  }

  function renderQuestion(q, qi) {
    const box = el("div", { class: `question ${qi === active ? "active" : ""}`, "data-question": q.name,
                            onclick: () => { if (active !== qi) { active = qi; render(); } } },
      el("h3", {}, el("span", { class: "pill gray", text: q.kind }), el("span", { text: q.title })));
    if (q.help) box.append(el("div", { class: "help", text: q.help }));
    const s = state[q.name];
    const here = qi === active;
    if (q.kind === "pairwise") {
      const options = q.strengths ? PAIR_LABELS : ["A better", "Tie", "B better"];
      const row = el("div", { class: "choices" });
      options.forEach((label, i) => {
        const scale = q.strengths ? i : [0, 3, 6][i];
        row.append(el("span", { class: `choice ${s.scale === scale ? "on" : ""}`,
                                onclick: () => { active = qi; choosePair(q, scale); } }, kbd(String(i + 1)), label));
      });
      box.append(row);
    } else if (q.kind === "rating") {
      const grid = el("div", { class: "cells" });
      cellsOf(q).forEach((c, ci) => {
        const key = `${c.response}|${c.aspect}`;
        const dots = el("div", { class: "dots" });
        for (let v = 1; v <= q.scale; v++) {
          dots.append(el("span", { class: `dot ${s[key] === v ? "on" : ""}`, text: String(v),
                                   title: q.labels && q.labels.length ? q.labels[v - 1] : "",
                                   onclick: (e) => { e.stopPropagation(); active = qi; cursor[q.name] = ci; setRating(q, v); } }));
        }
        grid.append(el("div", { class: `cell ${here && cursor[q.name] === ci ? "focus" : ""}` },
          el("span", { class: "name", text: `${letter(c.index)} · ${c.aspect}` }), dots));
      });
      box.append(grid);
      if (q.labels && q.labels.length) box.append(el("div", { class: "help small", text: q.labels.map((l, i) => `${i + 1} ${l}`).join(" · ") }));
    } else if (q.kind === "binary") {
      const grid = el("div", { class: "cells" });
      cellsOf(q).forEach((c, ci) => {
        const label = s.labels[c.response];
        const row = el("div", { class: `cell ${here && cursor[q.name] === ci ? "focus" : ""}` },
          el("span", { class: "name", text: `Response ${letter(c.index)}` }),
          el("span", { class: `dot thumb up ${label === true ? "on" : ""}`, text: "✓", title: "1: thumbs up",
                       onclick: (e) => { e.stopPropagation(); active = qi; cursor[q.name] = ci; setBinary(q, true); } }),
          el("span", { class: `dot thumb down ${label === false ? "on" : ""}`, text: "✗", title: "2: thumbs down",
                       onclick: (e) => { e.stopPropagation(); active = qi; cursor[q.name] = ci; setBinary(q, false); } }));
        if (q.reason) {
          const reason = el("input", { type: "text", placeholder: "reason (optional)", value: s.reasons[c.response] || "" });
          reason.addEventListener("input", () => { s.reasons[c.response] = reason.value; });
          reason.style.maxWidth = "22rem";
          row.append(reason);
        }
        grid.append(row);
      });
      box.append(grid);
    } else if (q.kind === "ranking") {
      const grid = el("div", { class: "cells" });
      cellsOf(q).forEach((c, ci) => {
        const rank = s.ranks[c.response];
        grid.append(el("div", { class: `cell ${here && cursor[q.name] === ci ? "focus" : ""}`,
                                onclick: () => { active = qi; cursor[q.name] = ci; render(); } },
          el("span", { class: `rankbox ${rank ? "on" : ""}`, text: rank ? String(rank) : "–" }),
          el("span", { class: "name", text: `Response ${letter(c.index)}` })));
      });
      box.append(grid);
      box.append(el("div", { class: "choices", style: "margin-top:.4rem" },
        el("span", { class: `choice ${s.allBad ? "on" : ""}`, onclick: () => { s.allBad = !s.allBad; render(); } },
           kbd("X"), "All are bad")));
      box.append(el("div", { class: "help small", text: "Number = rank (1 best). Same number = tie. Unranked responses count as below the ranked ones." }));
    } else if (q.kind === "edit" || q.kind === "comment") {
      const area = el("textarea", { rows: q.kind === "edit" ? 6 : 3, id: `text-${q.name}`,
                                    placeholder: q.kind === "comment" ? "Anything the team should know (optional)" : "" });
      area.value = s.text;
      area.addEventListener("input", () => { s.text = area.value; });
      area.addEventListener("focus", () => { if (active !== qi) { active = qi; markActive(); } });
      box.append(area, el("div", { class: "help small" }, kbd(q.kind === "edit" ? "E" : "C"),
        q.kind === "edit" ? ` edit Response ${letter(0)}; an unchanged text writes nothing` : " write; Esc leaves the box"));
    }
    return box;
  }

  function markActive() {
    document.querySelectorAll(".question").forEach((node, i) => node.classList.toggle("active", i === active));
  }

  // -- choosing ---------------------------------------------------------------------------
  function advance(q) {
    const cells = cellsOf(q);
    if (cursor[q.name] < cells.length - 1) cursor[q.name] += 1;
    else if (active < questions.length - 1) active += 1;
    render();
  }
  function choosePair(q, scale) { state[q.name].scale = scale; if (active < questions.length - 1) active += 1; render(); }
  function setRating(q, value) {
    const c = cellsOf(q)[cursor[q.name]];
    state[q.name][`${c.response}|${c.aspect}`] = value;
    advance(q);
  }
  function setBinary(q, label) {
    const c = cellsOf(q)[cursor[q.name]];
    state[q.name].labels[c.response] = label;
    advance(q);
  }
  function setRank(q, rank) {
    const c = cellsOf(q)[cursor[q.name]];
    if (rank === 0) delete state[q.name].ranks[c.response];
    else { state[q.name].ranks[c.response] = rank; state[q.name].allBad = false; }
    advance(q);
  }

  function onDigit(n) {
    const q = questions[active];
    if (q.kind === "pairwise") {
      if (q.strengths && n >= 1 && n <= 7) choosePair(q, n - 1);
      else if (!q.strengths && n >= 1 && n <= 3) choosePair(q, [0, 3, 6][n - 1]);
      else if (n === 0) { state[q.name].scale = null; render(); }
    } else if (q.kind === "rating") {
      if (n >= 1 && n <= q.scale) setRating(q, n);
      else if (n === 0) { const c = cellsOf(q)[cursor[q.name]]; delete state[q.name][`${c.response}|${c.aspect}`]; render(); }
    } else if (q.kind === "binary") {
      if (n === 1 || n === 2) setBinary(q, n === 1);
      else if (n === 0) { delete state[q.name].labels[cellsOf(q)[cursor[q.name]].response]; render(); }
    } else if (q.kind === "ranking") {
      if (n <= current.responses.length) setRank(q, n);
    }
  }

  function collect() {
    const answers = {};
    for (const q of questions) {
      const s = state[q.name];
      if (q.kind === "pairwise") {
        if (s.scale == null) { if (q.required) return [null, `${q.title}: choose A, B or tie`]; continue; }
        const [choice, strength] = PAIR_SCALE[s.scale];
        answers[q.name] = { choice, strength: q.strengths ? strength : null };
      } else if (q.kind === "rating") {
        const cells = cellsOf(q);
        const missing = cells.findIndex((c) => s[`${c.response}|${c.aspect}`] == null);
        if (missing >= 0 && q.required) return [null, `${q.title}: rate every response on every aspect`, q, missing];
        answers[q.name] = cells.filter((c) => s[`${c.response}|${c.aspect}`] != null)
          .map((c) => ({ response: c.response, aspect: c.aspect, value: s[`${c.response}|${c.aspect}`] }));
      } else if (q.kind === "binary") {
        const cells = cellsOf(q);
        const missing = cells.findIndex((c) => s.labels[c.response] == null);
        if (missing >= 0 && q.required) return [null, `${q.title}: thumbs up or down for every response`, q, missing];
        answers[q.name] = cells.filter((c) => s.labels[c.response] != null)
          .map((c) => ({ response: c.response, label: s.labels[c.response], reason: s.reasons[c.response] || "" }));
      } else if (q.kind === "ranking") {
        const ranks = [...new Set(Object.values(s.ranks))].sort((a, b) => a - b);
        const groups = ranks.map((rank) => Object.keys(s.ranks).filter((r) => s.ranks[r] === rank).map(Number));
        if (!s.allBad && q.required && groups.flat().length < Math.min(q.top_k || current.responses.length, current.responses.length))
          return [null, `${q.title}: rank the responses (or X: all are bad)`];
        answers[q.name] = { ranking: s.allBad ? [] : groups, all_bad: s.allBad };
      } else if (q.kind === "edit") {
        const original = current.responses[0];
        if (original && s.text.trim() && s.text !== original.text) answers[q.name] = { response: original.id, text: s.text };
      } else if (q.kind === "comment") {
        if (s.text.trim()) answers[q.name] = { text: s.text };
      }
    }
    return [answers, null];
  }

  // -- moving through the queue -----------------------------------------------------------
  function show(item) {
    current = item;
    freshState(item);
    // Word differences help when the two texts are variations of each other; for unrelated
    // texts every word would be marked, so those open formatted (D switches either way).
    diffView = item.responses.length >= 2 && (item.responses[0].diff_ratio || 0) >= 0.4;
    shownAt = performance.now();
    render();
    window.scrollTo(0, 0);
  }

  function showDone() {
    current = null;
    bench.replaceChildren(el("div", { class: "card empty", id: "done" },
      el("h2", { text: "Nothing left for you here" }),
      el("p", { text: "Every item has its annotators, or you have judged all the ones you may. Thank you!" }),
      el("p", {}, el("a", { href: "/annotate/", text: "Back to your projects" }), " · ", kbd("U"), " undoes your last submission")));
  }

  function toast(text, error = false) {
    const node = document.getElementById("toast");
    node.textContent = text;
    node.className = `toast show ${error ? "error" : ""}`;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => { node.className = "toast"; }, error ? 4000 : 1600);
  }

  // Finish the item on screen with `action` (a submit or a skip): show the prefetched item at
  // once and claim the one after only when the server has the action (so the finished item is
  // not handed back as a still-open lease). Finishes run one after another through `chain`,
  // so keys on the new item work at once, even while the last submit is still in flight.
  let chain = Promise.resolve();
  const finishing = new Set();
  function finish(action, label) {
    if (!current || finishing.has(current.item)) return;
    const leaving = { item: current, state, cursor, active };
    finishing.add(current.item);
    chain = chain.then(() => finishNow(leaving, action, label)).finally(() => finishing.delete(leaving.item.item));
  }

  async function finishNow(leaving, action, label) {
    const upcoming = prefetch;
    prefetch = null;
    const sent = withRetry(action);
    let next = null;
    try { next = upcoming ? await upcoming : null; } catch (error) { next = null; }
    if (current === leaving.item) {
      if (next) show(next); else bench.replaceChildren(el("div", { class: "empty", text: "Saving…" }));
    } else if (next) prefetch = Promise.resolve(next);
    try {
      await sent;
      toast(label);
    } catch (error) {
      toast(error.message, true);
      // Refused answers (400) or too many submissions (429): back to that item, nothing lost.
      if (error.status === 400 || error.status === 429) {
        if (current && current !== leaving.item) prefetch = Promise.resolve(current);
        current = leaving.item; ({ state, cursor, active } = leaving); render();
        return;
      }
    }
    if (!current || current === leaving.item || !document.querySelector(".response")) {
      let fresh = null;
      try { fresh = await claim([]); } catch (error) { toast(error.message, true); }
      if (fresh) show(fresh); else showDone();
    }
    if (current && !prefetch) prefetch = claim([current.item]).catch(() => null);
    refreshProgress();
  }

  function submit() {
    if (!current) return;
    const [answers, problem, q, cell] = collect();
    if (problem) {
      if (q) { active = questions.indexOf(q); cursor[q.name] = cell || 0; render(); }
      toast(problem, true);
      return;
    }
    const body = { item: current.item, answers, client_key: clientKey(),
                   seconds_spent: Math.round((performance.now() - shownAt) / 100) / 10 };
    finish(() => api("submit", body), "Submitted");
  }

  function skip() {
    if (!current) return;
    const item = current.item;
    finish(() => api("skip", { item }), "Skipped");
  }

  function undo() { chain = chain.then(undoNow); }

  async function undoNow() {
    try {
      const item = await api("undo?render=1");
      if (current && current.item !== item.item) prefetch = Promise.resolve(current);
      show(item);
      toast("Undone: your answers are back for editing");
      refreshProgress();
    } catch (error) {
      toast(error.status === 404 ? "Nothing to undo" : error.message, true);
    }
  }

  // -- keys -------------------------------------------------------------------------------
  function toggle(id) {
    const node = document.getElementById(id);
    const open = !node.classList.contains("open");
    document.querySelectorAll(".overlay").forEach((o) => o.classList.remove("open"));
    node.classList.toggle("open", open);
  }
  document.getElementById("btn-guidelines").addEventListener("click", () => toggle("guidelines"));
  document.getElementById("btn-keys").addEventListener("click", () => toggle("keys"));
  document.querySelectorAll(".overlay").forEach((o) => o.addEventListener("click", (e) => { if (e.target === o) o.classList.remove("open"); }));

  document.addEventListener("keydown", (event) => {
    const typing = ["TEXTAREA", "INPUT", "SELECT"].includes(event.target.tagName);
    if (typing) {
      if (event.key === "Escape") { event.target.blur(); event.preventDefault(); }
      else if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) { event.target.blur(); event.preventDefault(); submit(); }
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const overlayOpen = document.querySelector(".overlay.open");
    if (event.key === "Escape") { document.querySelectorAll(".overlay").forEach((o) => o.classList.remove("open")); return; }
    if (event.key === "?") { toggle("keys"); event.preventDefault(); return; }
    if (event.key === "g" || event.key === "G") { toggle("guidelines"); event.preventDefault(); return; }
    if (overlayOpen) return;
    const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
    if (key === "u") { undo(); event.preventDefault(); return; }
    if (!current) return;
    const q = questions[active];
    if (/^[0-9]$/.test(key)) { onDigit(Number(key)); event.preventDefault(); }
    else if (key === "ArrowRight" || key === "ArrowLeft") {
      const cells = cellsOf(q);
      if (cells.length) {
        cursor[q.name] = Math.max(0, Math.min(cells.length - 1, cursor[q.name] + (key === "ArrowRight" ? 1 : -1)));
        render();
      }
      event.preventDefault();
    } else if (key === "ArrowDown" || key === "ArrowUp") {
      active = Math.max(0, Math.min(questions.length - 1, active + (key === "ArrowDown" ? 1 : -1)));
      render();
      event.preventDefault();
    } else if (key === "Enter") { submit(); event.preventDefault(); }
    else if (key === "s") { skip(); event.preventDefault(); }
    else if (key === "d" && hasPairwise) { diffView = !diffView; render(); event.preventDefault(); }
    else if (key === "x" && q.kind === "ranking") { state[q.name].allBad = !state[q.name].allBad; render(); event.preventDefault(); }
    else if (key === "e" || key === "c") {
      const target = questions.find((x) => x.kind === (key === "e" ? "edit" : "comment"));
      if (target) { active = questions.indexOf(target); markActive(); document.getElementById(`text-${target.name}`).focus(); event.preventDefault(); }
    }
  });

  // -- start ------------------------------------------------------------------------------
  (async () => {
    refreshProgress();
    try {
      const first = await claim([]);
      if (first) { show(first); prefetch = claim([first.item]).catch(() => null); } else showDone();
    } catch (error) {
      bench.replaceChildren(el("div", { class: "card empty errors", text: error.message }));
    }
  })();
})();
