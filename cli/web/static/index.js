// The front page and search: what the catalog holds, a feature browser (filter, sort, page),
// and search across labels, tokens, uids, circuits and prompts.
"use strict";

(() => {
  const { el, num, pct, signed, section, table, featureLink } = cc;
  const main = document.getElementById("page");

  function overview(cat) {
    return el("div", { class: "grid two" },
      section("Models and transcoder sets",
        table([
          { title: "model", cell: (m) => m.uid }, { title: "layers", class: "num", cell: (m) => m.n_layers },
          { title: "d_model", class: "num", cell: (m) => m.d_model }, { title: "source", cell: (m) => m.source }], cat.models),
        table([
          { title: "set", cell: (s) => s.uid }, { title: "format", cell: (s) => s.format },
          { title: "d_transcoder", class: "num", cell: (s) => s.d_transcoder },
          { title: "features", class: "num", cell: (s) => s.n_features }], cat.sets)),
      section("Circuits and tasks",
        cat.circuits.length ? table([
          { title: "circuit", cell: (c) => el("a", { href: cc.circuitHref(c.uid), class: "circuit-link" }, c.name) },
          { title: "task", cell: (c) => c.task }, { title: "set", cell: (c) => c.set_uid },
          { title: "features", class: "num", cell: (c) => c.n_features },
          { title: "kept", class: "num", cell: (c) => pct(c.faithfulness.kept) }], cat.circuits, { id: "circuits" })
          : el("p", { class: "muted" }, "no circuits yet: `circuitcat circuit find --task TASK`"),
        el("h3", {}, "tasks"),
        el("div", { id: "tasks" }, cat.tasks.map((t) => taskBlock(t)))));
  }

  function taskBlock(t) {
    const box = el("div", {});
    const open = el("button", { class: "secondary", type: "button" }, `${t.name}: ${t.n_prompts} prompts (${t.metric})`);
    open.addEventListener("click", async () => {
      const data = await cc.api(`/api/tasks/${encodeURIComponent(t.uid)}/prompts?limit=200`);
      box.replaceChildren(open, table([
        { title: "prompt", cell: (p) => (p.graph_sets.length ? el("a", { href: cc.promptHref(p.uid, p.graph_sets[0]) }, p.text) : p.text) },
        { title: "answer", cell: (p) => p.answer },
        ...(data.prompts.some((p) => p.start_year) ? [{ title: "start year", cell: (p) => p.start_year || "" }] : []),
        { title: "metric", class: "num", cell: (p) => num(p.metric_value) }],
      data.prompts, { class: "prompts" }));
    });
    box.append(open);
    return box;
  }

  function browser(cat) {
    const out = el("div", { id: "feature-list" });
    const sets = cat.sets.map((s) => el("option", { value: s.uid }, s.uid));
    const layers = [...new Set(cat.sets.flatMap((s) => s.layers || []))].sort((a, b) => a - b);
    const form = el("form", { class: "inline", id: "feature-filter" },
      el("label", {}, "set", el("select", { name: "set" }, el("option", { value: "" }, "any"), sets)),
      el("label", {}, "layer", el("select", { name: "layer" }, el("option", { value: -1 }, "any"), layers.map((l) => el("option", { value: l }, `L${l}`)))),
      el("label", {}, "description contains", el("input", { name: "label" })),
      el("label", {}, "token", el("input", { name: "token", size: 8 })),
      el("label", {}, "sort", el("select", { name: "sort" }, ["density", "act_max", "act_mean", "index"].map((s) => el("option", { value: s }, s)))),
      el("label", {}, "order", el("select", { name: "order" }, el("option", { value: "desc" }, "desc"), el("option", { value: "asc" }, "asc"))),
      el("button", { type: "submit" }, "List"));
    let offset = 0;
    const run = async () => {
      const q = new URLSearchParams(new FormData(form));
      q.set("offset", offset); q.set("limit", 25);
      try {
        const data = await cc.api(`/api/features?${q}`);
        out.replaceChildren(data.token !== undefined ? tokenResults(data) : page(data));
      } catch (e) { cc.showError(out, e); }
    };
    const page = (data) => el("div", {},
      featureTable(data.features),
      el("div", { class: "pager" },
        el("button", { class: "secondary", type: "button", disabled: offset === 0, onclick: () => { offset = Math.max(0, offset - 25); run(); } }, "previous"),
        el("span", { class: "muted" }, `${data.total ? offset + 1 : 0}–${Math.min(offset + 25, data.total)} of ${data.total}`),
        el("button", { class: "secondary", type: "button", disabled: offset + 25 >= data.total, onclick: () => { offset += 25; run(); } }, "next")));
    form.addEventListener("submit", (e) => { e.preventDefault(); offset = 0; run(); });
    run();
    return section("Features", form, out);
  }

  function featureTable(rows, id) {
    return table([
      { title: "feature", cell: (f) => featureLink(f.uid) },
      { title: "density", class: "num", cell: (f) => pct(f.density) },
      { title: "mean act", class: "num", cell: (f) => num(f.act_mean) },
      { title: "max act", class: "num", cell: (f) => num(f.act_max) },
      { title: "promotes", cell: (f) => f.top_logits || "" },
      { title: "description", cell: (f) => f.description || f.label || "" }], rows, { id });
  }

  function weighted(rows, id) {
    if (!rows.length) return el("p", { class: "muted", id }, "none");
    return table([
      { title: "feature", cell: (f) => featureLink(f.uid) },
      { title: "w", class: "num", cell: (f) => signed(f.w) },
      { title: "description", cell: (f) => f.description || f.label || "" }], rows, { id });
  }

  const tokenResults = (d) => el("div", { class: "grid two" },
    el("div", {}, el("h3", {}, `features ${JSON.stringify(d.token)} excites`), weighted(d.reading, "reading-token")),
    el("div", {}, el("h3", {}, `features that promote ${JSON.stringify(d.token)}`), weighted(d.promoting, "promoting-token")));

  function results(r) {
    const parts = [];
    if (r.feature) parts.push(section("Feature", featureLink(r.feature, r.feature)));
    if (r.layer) parts.push(section(`Features of ${r.query}, densest first`, featureTable(r.layer, "layer-features")));
    parts.push(section("Features whose description matches",
      r.labelled.length ? featureTable(r.labelled, "labelled") : el("p", { class: "muted", id: "labelled" }, "none")));
    parts.push(section("By token", tokenResults({ token: r.query, reading: r.reading_token, promoting: r.promoting_token })));
    if (r.circuits.length) {
      parts.push(section("Circuits", r.circuits.map((c) => el("div", {}, el("a", { href: cc.circuitHref(c.uid) }, c.name)))));
    }
    parts.push(section("Prompts", r.prompts.length ? table([
      { title: "prompt", cell: (p) => el("a", { href: cc.promptHref(p.uid) }, p.text) },
      { title: "task", cell: (p) => p.task }, { title: "answer", cell: (p) => p.answer }], r.prompts)
      : el("p", { class: "muted" }, "none")));
    return parts;
  }

  // `feature find --reads-token T --promotes A..B --layer L`
  function finder() {
    const out = el("div", { id: "find-result" });
    const form = el("form", { class: "inline", id: "find-form" },
      el("label", {}, "reads token", el("input", { name: "reads", size: 8, placeholder: "45" })),
      el("label", {}, "promotes", el("input", { name: "promotes", size: 10, placeholder: "46..99" })),
      el("label", {}, "layer", el("input", { name: "layer", type: "number", min: 0, size: 4 })),
      el("button", { type: "submit" }, "Find"));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const data = new URLSearchParams([...new FormData(form)].filter(([, v]) => String(v).trim() !== ""));
      try {
        const rows = await cc.api(`/api/find?${data}`);
        out.replaceChildren(rows.length ? table([
          { title: "feature", cell: (f) => featureLink(f.uid) },
          { title: "layer", class: "num", cell: (f) => f.layer },
          { title: "promoted", class: "num", cell: (f) => f.n_promoted ?? "" },
          { title: "description", cell: (f) => f.description || "" }], rows, { id: "find-table" })
          : el("p", { class: "muted" }, "no feature matches"));
      } catch (e) {
        cc.showError(out, e);
      }
    });
    return section("Find features by what they read and promote", form, out);
  }

  async function start() {
    const q = cc.param("q");
    const box = el("form", { class: "inline", action: "/search", method: "get" },
      el("input", { name: "q", type: "search", value: q || "", size: 40, id: "search-input", placeholder: "a label, a token, L0/156, a prompt's words" }),
      el("button", { type: "submit" }, "Search"));
    if (q) {
      const found = await cc.api(`/api/search?q=${encodeURIComponent(q)}`);
      main.replaceChildren(el("h1", {}, "Search"), box, ...results(found));
      return;
    }
    const cat = await cc.api("/api/catalog");
    main.replaceChildren(
      el("h1", {}, "Catalog"),
      el("p", { class: "sub" }, "Transcoder features, their weights and per-prompt attributions, circuits. Search:"), box,
      overview(cat), browser(cat), finder());
  }

  start().catch((e) => cc.showError(main, e));
})();
