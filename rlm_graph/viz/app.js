// rlm-graph trajectory viewer. Vanilla JS, no dependencies, no network beyond this server.
// Reads rlm-graph logs and the reference `rlms` logger's logs (JSONL: a metadata record, then
// iteration records; a child RLM's iterations nested in rlm_calls[i].metadata.iterations).
"use strict";

(function () {
  // ---------------------------------------------------------------- small helpers
  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v == null || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) {
      if (c == null || c === false) continue;
      node.appendChild(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
    }
    return node;
  }

  const num = (v) => (typeof v === "number" && isFinite(v) ? v : null);
  const fmtInt = (n) => Math.round(n || 0).toLocaleString("en-US");
  const fmtSec = (s) => (s == null ? "—" : s < 10 ? s.toFixed(2) + " s" : s < 600 ? s.toFixed(1) + " s" : (s / 60).toFixed(1) + " min");
  const fmtCost = (c) => (c == null ? "—" : "$" + (c < 0.01 ? c.toFixed(5) : c.toFixed(4)));
  const oneLine = (s, n) => {
    const flat = String(s == null ? "" : s).replace(/\s+/g, " ").trim();
    return flat.length > n ? flat.slice(0, n - 1) + "…" : flat;
  };
  const plural = (n, word) => `${fmtInt(n)} ${word}${n === 1 ? "" : "s"}`;

  // ---------------------------------------------------------------- parsing
  function finalText(v) {
    if (v == null) return null;
    if (Array.isArray(v)) return v.length > 1 ? String(v[1]) : String(v[0]); // old reference: [kind, answer]
    return typeof v === "string" ? v : JSON.stringify(v);
  }

  function promptMessages(p) {
    if (Array.isArray(p)) return p.map((m) => (m && typeof m === "object" ? { role: String(m.role || "user"), content: textOf(m.content) } : { role: "user", content: textOf(m) }));
    if (p == null || p === "") return [];
    return [{ role: "user", content: textOf(p) }];
  }

  function textOf(v) {
    if (v == null) return "";
    if (typeof v === "string") return v;
    if (Array.isArray(v) && v.every((m) => m && typeof m === "object" && "content" in m)) return v.map((m) => `[${m.role}] ${textOf(m.content)}`).join("\n\n");
    return JSON.stringify(v, null, 2);
  }

  // usage in one shape: {model: {calls, input, output, cost}}
  function usageFromOurs(u) {
    const out = {};
    for (const [m, x] of Object.entries(u || {})) {
      out[m] = { calls: x.calls || 0, input: x.input_tokens || 0, output: x.output_tokens || 0, cost: num(x.cost_usd) };
    }
    return out;
  }

  function usageFromSummary(s) {
    const out = {};
    for (const [m, x] of Object.entries((s && s.model_usage_summaries) || {})) {
      out[m] = { calls: x.total_calls || 0, input: x.total_input_tokens || 0, output: x.total_output_tokens || 0, cost: num(x.total_cost) };
    }
    return out;
  }

  function addUsage(into, u) {
    for (const [m, x] of Object.entries(u || {})) {
      const cur = (into[m] = into[m] || { calls: 0, input: 0, output: 0, cost: null });
      cur.calls += x.calls || 0;
      cur.input += x.input || 0;
      cur.output += x.output || 0;
      if (x.cost != null) cur.cost = (cur.cost || 0) + x.cost;
    }
    return into;
  }

  const tokensOf = (u) => Object.values(u || {}).reduce((a, x) => a + (x.input || 0) + (x.output || 0), 0);
  const costOf = (u) => {
    const known = Object.values(u || {}).filter((x) => x.cost != null);
    return known.length ? known.reduce((a, x) => a + x.cost, 0) : null;
  };

  function normCall(c, depth) {
    c = c || {};
    const md = c.metadata && typeof c.metadata === "object" ? c.metadata : null;
    const hasChild = md && Array.isArray(md.iterations);
    let usage = c.usage_summary ? usageFromSummary(c.usage_summary) : {};
    if (!Object.keys(usage).length && (c.prompt_tokens != null || c.completion_tokens != null)) {
      usage = { [c.root_model || "sub-model"]: { calls: 1, input: c.prompt_tokens || 0, output: c.completion_tokens || 0, cost: num(c.cost_usd) } };
    }
    return {
      kind: c.kind || (hasChild ? "rlm" : "llm"),
      model: c.root_model || Object.keys(usage)[0] || null,
      prompt: textOf(c.prompt),
      response: textOf(c.response),
      error: c.error || null,
      refused: !!c.refused,
      time: num(c.execution_time),
      usage,
      cost: num(c.cost_usd) != null ? c.cost_usd : costOf(usage),
      summary: c.child || null,
      child: hasChild ? normRun({ depth: depth + 1, ...(md.run_metadata || {}) }, md.iterations, null) : null,
    };
  }

  function normBlock(b, depth) {
    b = b || {};
    const r = b.result || {};
    return {
      code: String(b.code || ""),
      stdout: textOf(r.stdout),
      stderr: textOf(r.stderr),
      locals: r.locals && typeof r.locals === "object" ? r.locals : {},
      time: num(r.execution_time),
      final: finalText(r.final_answer),
      calls: (Array.isArray(r.rlm_calls) ? r.rlm_calls : []).map((c) => normCall(c, depth)),
    };
  }

  function normIter(r, i, depth) {
    const blocks = (Array.isArray(r.code_blocks) ? r.code_blocks : []).map((b) => normBlock(b, depth));
    const ours = r.usage && typeof r.usage === "object";
    let usage = ours ? usageFromOurs(r.usage) : {};
    if (!ours) {
      // reference logs carry no root-model usage: count what their sub-calls report
      for (const b of blocks) for (const c of b.calls) addUsage(usage, c.usage);
    }
    return {
      n: r.iteration != null ? r.iteration : i + 1,
      depth: r.depth != null ? r.depth : depth,
      timestamp: r.timestamp || null,
      prompt: promptMessages(r.prompt),
      promptIsFull: !("namespace" in r), // reference logs store the whole conversation
      response: textOf(r.response),
      blocks,
      final: finalText(r.final_answer),
      time: num(r.iteration_time),
      modelTime: num(r.model_time),
      rootIn: num(r.prompt_tokens),
      rootOut: num(r.completion_tokens),
      usage,
      usageKnown: ours,
      stoppedBy: r.stopped_by || null,
      forced: r.forced_final || null,
      contextMeta: r.context_meta || null,
      unfinished: (Array.isArray(r.unfinished_children) ? r.unfinished_children : []).map((t) => normRun(t.run_metadata || {}, t.iterations || [], null)),
    };
  }

  function normRun(meta, iters, result, extra) {
    const run = {
      meta: meta || {},
      iterations: (iters || []).map((r, i) => normIter(r, i, (meta && meta.depth) || 0)),
      result: result || null,
      source: (meta && meta.library) || (iters || []).some((r) => r && "namespace" in r) ? "rlm-graph" : "rlms",
      ...(extra || {}),
    };
    run.totals = totals(run);
    return run;
  }

  function parseLog(text, name) {
    const trimmed = text.trim();
    // a whole trajectory object: the reference's completion.metadata ({run_metadata, iterations})
    if (trimmed.startsWith("{")) {
      try {
        const obj = JSON.parse(trimmed);
        if (obj && Array.isArray(obj.iterations)) return normRun(obj.run_metadata || {}, obj.iterations, null, { name, skipped: 0 });
      } catch (e) { /* fall through to JSONL */ }
    }
    let meta = null, result = null, skipped = 0, question = null;
    const iters = [];
    for (const line of text.split(/\r?\n/)) {
      if (!line.trim()) continue;
      let r;
      try { r = JSON.parse(line); } catch (e) { skipped++; continue; }
      if (!r || typeof r !== "object") { skipped++; continue; }
      if (r.type === "metadata") meta = r;
      else if (r.type === "result") result = r;
      else if (r.type === "iteration" || (r.type == null && Array.isArray(r.code_blocks))) iters.push(r);
      else if (r.type === "run_context" && r.root_prompt) question = String(r.root_prompt);
    }
    if (!meta && !iters.length && !result) throw new Error("no trajectory records in this file (expected JSONL with a metadata record and iteration records)");
    return normRun(meta || {}, iters, result, { name, skipped, question });
  }

  // ---------------------------------------------------------------- totals
  function walkCalls(run, fn, depth) {
    for (const it of run.iterations) for (const b of it.blocks) for (const c of b.calls) {
      fn(c, depth || 0);
      if (c.child) walkCalls(c.child, fn, (depth || 0) + 1);
    }
  }

  function totals(run) {
    const t = { iterations: run.iterations.length, childIterations: 0, blocks: 0, childBlocks: 0, calls: 0, children: 0, errors: 0 };
    for (const it of run.iterations) {
      t.blocks += it.blocks.length;
      t.errors += it.blocks.filter((b) => b.stderr.trim()).length;
    }
    walkCalls(run, (c) => {
      t.calls += 1;
      if (c.child) {
        t.children += 1;
        t.childIterations += c.child.iterations.length;
        for (const it of c.child.iterations) t.childBlocks += it.blocks.length;
      }
    });
    const res = run.result;
    if (res && res.usage) {
      t.usage = usageFromOurs(res.usage);
      t.usageComplete = true;
    } else {
      t.usage = {};
      for (const it of run.iterations) addUsage(t.usage, it.usage);
      t.usageComplete = run.iterations.length > 0 && run.iterations.every((it) => it.usageKnown);
    }
    if (res && res.subcalls != null) t.calls = res.subcalls;
    t.tokens = tokensOf(t.usage);
    t.input = Object.values(t.usage).reduce((a, x) => a + x.input, 0);
    t.output = Object.values(t.usage).reduce((a, x) => a + x.output, 0);
    t.cost = costOf(t.usage);
    t.time = res && num(res.execution_time) != null ? res.execution_time : run.iterations.reduce((a, it) => a + (it.time || it.blocks.reduce((s, b) => s + (b.time || 0), 0)), 0);
    const last = [...run.iterations].reverse().find((it) => it.final != null);
    t.answer = res && res.final_answer != null ? finalText(res.final_answer) : last ? last.final : null;
    t.stoppedBy = (res && res.stopped_by) || (last && last.stoppedBy) || null;
    t.confirmed = res && typeof res.confirmed === "boolean" ? res.confirmed : null;
    return t;
  }

  function iterTokens(it) {
    return Object.values(it.usage).reduce((a, x) => ({ input: a.input + x.input, output: a.output + x.output }), { input: 0, output: 0 });
  }

  // ---------------------------------------------------------------- syntax highlighting (Python)
  const KEYWORDS = new Set("False None True and as assert async await break class continue def del elif else except finally for from global if import in is lambda nonlocal not or pass raise return try while with yield match case".split(" "));
  const BUILTINS = new Set("print len range sum min max sorted enumerate zip map filter list dict set tuple str int float bool open isinstance type any all abs round repr reversed self super Exception ValueError KeyError".split(" "));
  const RLM_NAMES = new Set("context llm_query llm_query_batched rlm_query rlm_query_batched FINAL FINAL_VAR SHOW_VARS".split(" "));
  const TOKEN = /(#[^\n]*)|((?:[rRbBuUfF]{1,2})?(?:"""[\s\S]*?(?:"""|$)|'''[\s\S]*?(?:'''|$)|"(?:[^"\\\n]|\\.)*"?|'(?:[^'\\\n]|\\.)*'?))|(\b0[xXoObB][\da-fA-F_]+\b|\b\d[\d_]*(?:\.\d*)?(?:[eE][+-]?\d+)?j?\b|\.\d+\b)|(@[A-Za-z_][\w.]*)|([A-Za-z_]\w*)|([-+*/%=<>!&|^~:]+)|([\s\S])/g;

  function highlight(code) {
    const frag = document.createDocumentFragment();
    let prevWord = "";
    TOKEN.lastIndex = 0;
    let m, plain = "";
    const flush = () => { if (plain) { frag.appendChild(document.createTextNode(plain)); plain = ""; } };
    const span = (cls, text) => { flush(); frag.appendChild(el("span", { class: cls, text })); };
    while ((m = TOKEN.exec(code)) !== null) {
      const [text, com, str, number, dec, word, op] = m;
      if (com) span("tok-com", text);
      else if (str) span("tok-str", text);
      else if (number) span("tok-num", text);
      else if (dec) span("tok-dec", text);
      else if (word) {
        if (KEYWORDS.has(word)) span("tok-kw", word);
        else if (RLM_NAMES.has(word)) span("tok-rlm", word);
        else if (prevWord === "def" || prevWord === "class") span("tok-fn", word);
        else if (BUILTINS.has(word)) span("tok-bi", word);
        else plain += word;
        prevWord = word;
        continue;
      } else if (op) span("tok-op", text);
      else plain += text;
      if (!/^\s+$/.test(text)) prevWord = "";
    }
    flush();
    return frag;
  }

  function codeView(code, opts) {
    const pre = el("pre", { class: "code", "data-lang": "python" });
    if (opts && opts.lines) {
      const lines = code.split("\n");
      lines.forEach((line, i) => {
        pre.appendChild(el("span", { class: "ln", text: String(i + 1) }));
        pre.appendChild(highlight(line));
        if (i < lines.length - 1) pre.appendChild(document.createTextNode("\n"));
      });
    } else {
      pre.appendChild(highlight(code));
    }
    return pre;
  }

  // prose with ```fenced``` code, the code highlighted
  function richText(text) {
    const box = el("div", {});
    const fence = /```([\w+-]*)[^\n]*\n([\s\S]*?)(?:```|$)/g;
    let last = 0, m;
    while ((m = fence.exec(text)) !== null) {
      if (m.index > last) box.appendChild(el("div", { class: "prose", text: text.slice(last, m.index).trim() }));
      box.appendChild(codeView(m[2].replace(/\n$/, "")));
      last = fence.lastIndex;
    }
    if (last < text.length && text.slice(last).trim()) box.appendChild(el("div", { class: "prose", text: text.slice(last).trim() }));
    if (!box.childNodes.length) box.appendChild(el("div", { class: "prose muted", text: "(empty)" }));
    return box;
  }

  // ---------------------------------------------------------------- rendering: summary
  const state = { run: null, selected: 0, served: null };

  function card(id, label, value, sub) {
    return el("div", { class: "card" + (id === "answer" ? " answer" : ""), "data-testid": "stat-" + id },
      el("div", { class: "label", text: label }),
      el("div", { class: "value", text: value }),
      sub ? el("div", { class: "sub", text: sub }) : null);
  }

  function renderSummary(run) {
    const t = run.totals;
    const m = run.meta;
    const box = $("summary");
    box.replaceChildren(
      card("iterations", "Iterations", fmtInt(t.iterations), t.childIterations ? `+${fmtInt(t.childIterations)} in child RLMs` : (m.max_iterations ? `of ${m.max_iterations} allowed` : null)),
      card("code-blocks", "Code blocks", fmtInt(t.blocks), t.childBlocks ? `+${fmtInt(t.childBlocks)} in child RLMs` : (t.errors ? plural(t.errors, "error") : null)),
      card("sub-calls", "Sub-calls", fmtInt(t.calls), t.children ? plural(t.children, "child RLM") : null),
      card("tokens", "Tokens", fmtInt(t.tokens), `${fmtInt(t.input)} in / ${fmtInt(t.output)} out` + (t.usageComplete ? "" : " (sub-calls only)")),
      card("cost", "Cost", fmtCost(t.cost), t.cost == null ? "no prices known" : null),
      card("time", "Time", fmtSec(t.time), run.result ? "wall clock" : "sum of iterations"),
      card("answer", "Final answer", t.answer == null ? "—" : oneLine(t.answer, 160), t.stoppedBy && t.stoppedBy !== "final" ? `forced: ${t.stoppedBy} · unconfirmed` : t.confirmed === false ? "unconfirmed" : t.confirmed ? "confirmed" : (m.root_model ? `root model ${m.root_model}` : null)),
    );
    const q = run.question || questionOf(run);
    $("question").hidden = !q;
    $("question").replaceChildren(el("span", { class: "muted", text: "Question: " }), q || "");
  }

  function questionOf(run) {
    const first = run.iterations[0];
    if (!first) return null;
    // ours: "Question: ..."; the reference's: "Answer the following: ..." or 'original query: "..."'
    const patterns = [/^Question: (.*)$/m, /^Answer the following: (.*)$/m, /original query: "([^"]+)"/];
    for (const msg of first.prompt) {
      if (msg.role !== "user") continue;
      for (const re of patterns) {
        const m = re.exec(msg.content);
        if (m) return m[1];
      }
    }
    return null;
  }

  function renderModels(run) {
    const t = run.totals;
    const rows = Object.entries(t.usage);
    if (!rows.length) {
      $("models").replaceChildren(el("p", { class: "muted", text: "No usage recorded in this log." }));
      return;
    }
    const table = el("table", {},
      el("thead", {}, el("tr", {}, ["Model", "Calls", "Input tokens", "Output tokens", "Tokens", "Cost"].map((h) => el("th", { text: h })))),
      el("tbody", {}, rows.map(([model, u]) => el("tr", { "data-model": model },
        el("td", { text: model }), el("td", { text: fmtInt(u.calls) }), el("td", { text: fmtInt(u.input) }),
        el("td", { text: fmtInt(u.output) }), el("td", { text: fmtInt(u.input + u.output) }), el("td", { text: fmtCost(u.cost) })))));
    const note = el("p", { class: "muted", text: "This log does not record the root model's usage; the numbers above are its sub-calls'." });
    $("models").replaceChildren(...(t.usageComplete ? [table] : [table, note]));
  }

  // ---------------------------------------------------------------- rendering: timeline and chart
  function renderTimeline(run) {
    const box = $("timeline");
    const times = run.iterations.map((it) => it.time || 0);
    const max = Math.max(...times, 0.001);
    box.replaceChildren(...run.iterations.map((it, i) => {
      const calls = it.blocks.reduce((a, b) => a + b.calls.length, 0);
      const tok = iterTokens(it);
      const cls = [it.final != null ? "final" : "", it.blocks.some((b) => b.stderr.trim()) ? "error" : "", calls ? "calls" : "", i === state.selected ? "selected" : ""].filter(Boolean).join(" ");
      const b = el("button", {
        class: cls, "data-iter": i, title: `iteration ${it.n} · ${fmtSec(it.time)} · ${fmtInt(tok.input + tok.output)} tokens · ${plural(it.blocks.length, "code block")} · ${plural(calls, "sub-call")}`,
        onclick: () => select(i),
      }, String(it.n));
      b.style.flexGrow = String(0.15 + (it.time || 0) / max);
      return b;
    }));
    const legend = el("div", { class: "legend" },
      el("span", {}, el("i", { style: "background:var(--accent)" }), "code"),
      el("span", {}, el("i", { style: "background:var(--purple)" }), "sub-calls"),
      el("span", {}, el("i", { style: "background:var(--red)" }), "error"),
      el("span", {}, el("i", { style: "background:var(--green)" }), "final"));
    box.parentElement.querySelector(".legend")?.remove();
    box.after(legend);
  }

  const SVG = "http://www.w3.org/2000/svg";
  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) if (v != null) node.setAttribute(k, String(v));
    for (const c of children) if (c) node.appendChild(c);
    return node;
  }

  function renderChart(run) {
    const data = run.iterations.map((it) => iterTokens(it));
    const W = 560, H = 190, L = 52, B = 22, T = 10;
    const max = Math.max(1, ...data.map((d) => d.input + d.output));
    const n = Math.max(1, data.length);
    const slot = (W - L - 6) / n;
    const bw = Math.max(2, Math.min(40, slot * 0.7));
    const y = (v) => T + (H - T - B) * (1 - v / max);
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "tokens per iteration" });
    for (const f of [0, 0.5, 1]) {
      root.appendChild(svg("line", { class: "grid", x1: L, x2: W - 4, y1: y(max * f), y2: y(max * f) }));
      const label = svg("text", { x: L - 6, y: y(max * f) + 4, "text-anchor": "end" });
      label.textContent = fmtInt(max * f);
      root.appendChild(label);
    }
    data.forEach((d, i) => {
      const x = L + slot * i + (slot - bw) / 2;
      const g = svg("g", { class: "bar", "data-iter": i, "data-tokens": d.input + d.output });
      const title = svg("title");
      title.textContent = `iteration ${run.iterations[i].n}: ${fmtInt(d.input)} in + ${fmtInt(d.output)} out = ${fmtInt(d.input + d.output)} tokens`;
      g.appendChild(title);
      g.appendChild(svg("rect", { x, width: bw, y: y(d.input), height: Math.max(0, y(0) - y(d.input)), fill: "var(--in)", rx: 1.5 }));
      g.appendChild(svg("rect", { x, width: bw, y: y(d.input + d.output), height: Math.max(0, y(d.input) - y(d.input + d.output)), fill: "var(--out)", rx: 1.5 }));
      if (i === state.selected) g.appendChild(svg("rect", { class: "sel", x: x - 2, width: bw + 4, y: y(d.input + d.output) - 2, height: y(0) - y(d.input + d.output) + 4 }));
      g.addEventListener("click", () => select(i));
      root.appendChild(g);
      if (n <= 30 || i % Math.ceil(n / 30) === 0) {
        const t = svg("text", { x: x + bw / 2, y: H - 6, "text-anchor": "middle" });
        t.textContent = String(run.iterations[i].n);
        root.appendChild(t);
      }
    });
    const legend = el("div", { class: "legend" },
      el("span", {}, el("i", { style: "background:var(--in)" }), "input tokens"),
      el("span", {}, el("i", { style: "background:var(--out)" }), "output tokens"),
      run.totals.usageComplete ? null : el("span", { text: "(sub-calls only: the log has no root-model usage)" }));
    $("chart").replaceChildren(root, legend);
  }

  // ---------------------------------------------------------------- rendering: one iteration
  function messagesView(msgs) {
    return el("div", { class: "messages" }, msgs.map((m) => el("div", { class: "msg " + m.role },
      el("div", { class: "role", text: m.role }), el("pre", { text: m.content }))));
  }

  function callView(c) {
    const tok = tokensOf(c.usage);
    const failed = !!c.error;
    const summary = el("summary", {},
      el("span", { class: "kind " + c.kind, text: c.kind + "_query" }),
      el("span", { class: "p", text: JSON.stringify(oneLine(c.prompt, 70)) }),
      el("span", { class: "muted", text: "→" }),
      el("span", { class: "r", text: failed ? "error: " + oneLine(c.error, 60) : JSON.stringify(oneLine(c.response, 70)) }),
      el("span", { class: "chip", "data-testid": "call-tokens", text: fmtInt(tok) + " tok" }),
      el("span", { class: "chip", text: fmtSec(c.time) }),
      c.child ? el("span", { class: "chip purple", text: plural(c.child.iterations.length, "iteration") }) : null);
    const body = el("div", { class: "body" },
      el("div", { class: "label", text: "Prompt" }), el("pre", { class: "out", text: c.prompt }),
      el("div", { class: "label", text: "Response" }), el("pre", { class: "out", text: c.response || "(empty)" }),
      failed ? el("div", { class: "label", text: "Error" }) : null, failed ? el("pre", { class: "out err", text: c.error }) : null,
      el("div", { class: "muted", text: Object.entries(c.usage).map(([m, u]) => `${m}: ${fmtInt(u.calls)} call(s), ${fmtInt(u.input)} in / ${fmtInt(u.output)} out${u.cost != null ? " · " + fmtCost(u.cost) : ""}`).join(" · ") || "no usage recorded" }),
      c.summary && c.summary.fallback ? el("div", { class: "note", text: `answered by a plain model call: ${c.summary.fallback} reached` }) : null,
      c.child ? childView(c.child, c) : null);
    return el("details", { class: "call" + (failed ? " failed" : ""), "data-testid": "call", "data-kind": c.kind }, summary, body);
  }

  function childView(run, call) {
    const t = run.totals;
    const depth = run.meta.depth != null ? run.meta.depth : "?";
    const answer = run.meta.final_answer != null ? run.meta.final_answer : t.answer;
    return el("div", { class: "child", "data-testid": "child-run" },
      el("div", {},
        el("strong", { text: `Child RLM · depth ${depth}` }), " ",
        el("span", { class: "chip", text: plural(run.iterations.length, "iteration") }), " ",
        el("span", { class: "chip", text: fmtInt(tokensOf(call.usage)) + " tokens" }), " ",
        answer != null ? el("span", { class: "chip green", text: "answer " + JSON.stringify(oneLine(answer, 60)) }) : null),
      run.meta.partial ? el("div", { class: "note", text: "This child's replies were not in the run's stream, so only its counts, cells and answer are shown." }) : null,
      run.iterations.map((it) => {
        const tok = iterTokens(it);
        return el("details", { class: "child-iter", "data-testid": "child-iteration" },
          el("summary", {}, el("strong", { text: `Iteration ${it.n}` }), " ",
            el("span", { class: "muted", text: [fmtSec(it.time), it.usageKnown || tok.input + tok.output ? fmtInt(tok.input + tok.output) + " tokens" : null, plural(it.blocks.length, "code block")].filter(Boolean).join(" · ") }),
            it.final != null ? el("span", { class: "chip green", text: "FINAL" }) : null),
          el("div", { class: "inner" }, iterationBody(it)));
      }));
  }

  function blockView(b, i) {
    const localsEntries = Object.entries(b.locals);
    return el("div", { class: "block", "data-testid": "code-block" },
      el("div", { class: "bhead" },
        el("strong", { text: `Code block ${i + 1}` }),
        el("span", { class: "chip", text: fmtSec(b.time) }),
        b.calls.length ? el("span", { class: "chip purple", text: plural(b.calls.length, "sub-call") }) : null,
        b.stderr.trim() ? el("span", { class: "chip red", text: "error" }) : null,
        b.final != null ? el("span", { class: "chip green", text: "FINAL" }) : null),
      codeView(b.code, { lines: true }),
      el("div", { class: "label", text: "Output" }),
      el("pre", { class: "out", "data-testid": "stdout", text: b.stdout || "(no output)" }),
      b.stderr.trim() ? el("pre", { class: "out err", "data-testid": "stderr", text: b.stderr }) : null,
      localsEntries.length ? el("div", { class: "label", text: "Variables" }) : null,
      localsEntries.length ? el("div", { class: "locals" }, localsEntries.slice(0, 60).map(([k, v]) => el("span", { class: "chip", title: textOf(v), text: `${k}: ${oneLine(textOf(v), 30)}` }))) : null,
      b.calls.length ? el("div", { class: "label", text: "Sub-calls" }) : null,
      b.calls.length ? el("ul", { class: "tree" }, b.calls.map((c) => el("li", {}, callView(c)))) : null);
  }

  function iterationBody(it) {
    const n = it.prompt.length;
    return el("div", {},
      n ? el("details", { class: "prompt" },
        el("summary", { text: it.promptIsFull ? `Prompt (${plural(n, "message")}, the whole conversation)` : `Prompt: what the model saw new (${plural(n, "message")})` }),
        messagesView(it.prompt)) : null,
      el("div", { class: "label", text: "Reasoning" }),
      el("div", { class: "reasoning", "data-testid": "response" }, richText(it.response)),
      it.blocks.map(blockView),
      it.forced ? el("div", { class: "block" }, el("div", { class: "label", text: "Forced final answer: the prompt" }), messagesView(promptMessages(it.forced.prompt)),
        el("div", { class: "label", text: "Reply" }), richText(textOf(it.forced.response))) : null,
      it.unfinished.length ? el("div", { class: "note", text: `${plural(it.unfinished.length, "child RLM")} still running when the log ended:` }) : null,
      it.unfinished.map((r) => childView(r, { usage: {} })),
      it.final != null ? el("div", { class: "final", "data-testid": "final" }, el("div", { class: "label", text: "Final answer" + (it.stoppedBy && it.stoppedBy !== "final" ? ` (forced: ${it.stoppedBy})` : "") }), el("pre", { text: it.final })) : null);
  }

  function renderIteration(run) {
    const it = run.iterations[state.selected];
    const box = $("iteration");
    if (!it) {
      box.replaceChildren(el("p", { class: "muted", text: "This log has no iterations." }));
      return;
    }
    const tok = iterTokens(it);
    const calls = it.blocks.reduce((a, b) => a + b.calls.length, 0);
    box.replaceChildren(
      el("div", { class: "head" },
        el("h2", { "data-testid": "iteration-title", text: `Iteration ${it.n} of ${run.iterations.length}` }),
        el("span", { class: "chip", title: "iteration time", text: fmtSec(it.time) }),
        it.modelTime != null ? el("span", { class: "chip", title: "time the model took to reply", text: "model " + fmtSec(it.modelTime) }) : null,
        el("span", { class: "chip", "data-testid": "iteration-tokens", text: fmtInt(tok.input + tok.output) + " tokens" }),
        calls ? el("span", { class: "chip purple", text: plural(calls, "sub-call") }) : null,
        it.stoppedBy ? el("span", { class: "chip " + (it.stoppedBy === "final" ? "green" : "yellow"), text: "stopped: " + it.stoppedBy }) : null,
        it.timestamp ? el("span", { class: "muted", text: new Date(it.timestamp).toLocaleString() }) : null),
      iterationBody(it));
  }

  // ---------------------------------------------------------------- app
  function select(i) {
    if (!state.run) return;
    state.selected = Math.max(0, Math.min(state.run.iterations.length - 1, i));
    renderTimeline(state.run);
    renderChart(state.run);
    renderIteration(state.run);
  }

  function show(run, label) {
    state.run = run;
    state.selected = 0;
    $("empty").hidden = true;
    $("run").hidden = false;
    $("source").textContent = label + (run.source === "rlms" ? " · reference rlms log" : "") + (run.skipped ? ` · ${run.skipped} unreadable line(s) skipped` : "");
    document.title = `${run.name || "log"} · rlm-graph viewer`;
    renderSummary(run);
    renderModels(run);
    select(0);
  }

  function fail(message) {
    state.run = null;
    $("run").hidden = true;
    $("empty").hidden = false;
    $("error").hidden = false;
    $("error").textContent = message;
  }

  function openText(text, name, label) {
    try {
      show(parseLog(text, name), label || name);
    } catch (e) {
      fail(`Cannot open ${name}: ${e.message}`);
    }
  }

  async function openFile(file) {
    if (!file) return;
    state.served = null;
    $("reload").hidden = true;
    openText(await file.text(), file.name, file.name + " (local file)");
  }

  async function openServed(name, keepSelection) {
    try {
      const res = await fetch("api/log?name=" + encodeURIComponent(name));
      if (!res.ok) throw new Error((await res.json()).error || res.statusText);
      const selected = state.selected;
      openText(await res.text(), name);
      state.served = name;
      $("reload").hidden = false;
      if (keepSelection && state.run) select(selected);
      const sel = $("log-select");
      if (sel.value !== name) sel.value = name;
      history.replaceState(null, "", "?log=" + encodeURIComponent(name));
    } catch (e) {
      fail(`Cannot load ${name}: ${e.message}`);
    }
  }

  async function loadList() {
    let data;
    try {
      const res = await fetch("api/logs");
      if (!res.ok) return;
      data = await res.json();
    } catch (e) {
      return; // opened without the server: the picker and drag-and-drop still work
    }
    const sel = $("log-select");
    sel.replaceChildren(...data.logs.map((l) => el("option", { value: l.name, text: `${l.name} · ${(l.size / 1024).toFixed(1)} KB` })));
    sel.hidden = !data.logs.length;
    const wanted = new URLSearchParams(location.search).get("log");
    const name = data.logs.some((l) => l.name === wanted) ? wanted : data.default;
    if (name) await openServed(name);
  }

  function wire() {
    $("log-select").addEventListener("change", (e) => openServed(e.target.value));
    $("reload").addEventListener("click", () => { if (state.served) openServed(state.served, true); });
    $("file-input").addEventListener("change", (e) => { openFile(e.target.files[0]); e.target.value = ""; });
    let depth = 0;
    const drop = $("drop");
    document.addEventListener("dragenter", (e) => { e.preventDefault(); depth++; drop.hidden = false; });
    document.addEventListener("dragover", (e) => { e.preventDefault(); });
    document.addEventListener("dragleave", (e) => { e.preventDefault(); if (--depth <= 0) { depth = 0; drop.hidden = true; } });
    document.addEventListener("drop", (e) => {
      e.preventDefault();
      depth = 0;
      drop.hidden = true;
      const file = e.dataTransfer && e.dataTransfer.files && e.dataTransfer.files[0];
      if (file) openFile(file);
    });
    document.addEventListener("keydown", (e) => {
      if (!state.run || e.target.closest("input, select, textarea")) return;
      if (e.key === "ArrowRight") select(state.selected + 1);
      else if (e.key === "ArrowLeft") select(state.selected - 1);
    });
  }

  // exposed for tests and the console
  window.rlmViewer = { parseLog, openText, select, get run() { return state.run; } };
  wire();
  loadList();
})();
