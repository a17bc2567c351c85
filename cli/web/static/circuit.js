// The circuit page: the circuit as an interactive layered graph (tokens at the bottom, layers
// upwards, the metric on top), its faithfulness figures, features, heads and strongest paths.
"use strict";

(() => {
  const { el, num, signed, pct, section, table, featureLink } = cc;
  const main = document.getElementById("page");

  // Target names as stored -> what they are.
  const TARGETS = { logit_diff: "logit difference", prob_diff: "probability difference" };
  const targetName = (name) => TARGETS[name] || name;

  function graphSpec(g, perRow) {
    const maxScore = d3.max(g.nodes, (n) => Math.abs(n.score || 0)) || 1;
    const rows = [{ row: -1, label: "tokens" }];
    for (let l = 0; l < g.n_layers; l++) rows.push({ row: l, label: `L${l}` });
    // The edges go into the attribution target (the logit difference), which is not the
    // metric `circuit verify` scores (faithfulness.metric, e.g. the probability difference).
    rows.push({ row: g.n_layers, label: "target" });
    const nodes = g.nodes.map((n) => ({
      ...n,
      size: n.kind === "target" ? 0.6 : Math.abs(n.score || 0) / maxScore,
      order: n.kind === "token" && /^\d+$/.test(n.name) ? Number(n.name) : 0,
      name: n.kind === "token" ? JSON.stringify(n.name) : n.kind === "target" ? targetName(n.name) : n.name,
      title: n.kind === "feature" ? `${n.name}${n.description ? ` — ${n.description}` : ""}` : n.name,
      href: n.kind === "feature" ? cc.featureHref(n.id) : null,
      info: n.kind === "feature"
        ? [["score", num(n.score)], ["density", pct(n.density)], ["works on", n.prompts_on || "-"], ["promotes", n.top_logits || "-"], "click to open"]
        : n.kind === "token" ? [["score", num(n.score)]]
        : n.kind === "target" ? [["attribution target", n.name], ["verify metric", (g.circuit.faithfulness || {}).metric || "not verified"]] : [],
    }));
    const rowOf = new Map(nodes.map((n) => [n.id, n.row]));
    // Only the strongest edges into each row: every edge of a dense circuit is unreadable.
    const byRow = d3.group(g.links, (l) => rowOf.get(l.target));
    const links = [...byRow.values()].flatMap((ls) =>
      ls.sort((a, b) => Math.abs(b.weight) - Math.abs(a.weight)).slice(0, perRow))
      .map((l) => ({ ...l, info: [["sum over prompts", signed(l.total)], ["prompts", l.n_prompts]] }));
    return { nodes, links, rows };
  }

  // Horizontal bars of the task metric: the model, transcoders, circuit, random circuits, none.
  function faithfulness(f) {
    if (!f || f.circuit === undefined) {
      return el("p", { class: "muted", id: "faithfulness" }, "not verified yet: run `circuitcat circuit verify NAME`");
    }
    const bars = [
      ["original model", f.full], ["all MLPs → transcoders", f.replaced], [`circuit (${f.n_features} features)`, f.circuit],
      [`random × ${(f.random_draws || []).length}, same size`, f.random], ["no feature (means)", f.empty],
    ].filter((b) => b[1] !== undefined && b[1] !== null);
    const W = 560, H = 30 * bars.length + 40, m = { l: 190, r: 20 };
    const values = [...bars.map((b) => b[1]), ...(f.random_draws || []), 0];
    const x = d3.scaleLinear().domain(d3.extent(values)).nice().range([m.l, W - m.r]);
    const svg = d3.create("svg").attr("viewBox", `0 0 ${W} ${H}`).attr("width", "100%").attr("id", "faithfulness-figure")
      .attr("class", "figure");
    const g = svg.append("g").selectAll("g").data(bars).join("g").attr("transform", (b, i) => `translate(0,${10 + i * 30})`);
    g.append("text").attr("x", m.l - 8).attr("y", 15).attr("text-anchor", "end").text((b) => b[0]);
    g.append("rect").attr("x", (b) => Math.min(x(0), x(b[1]))).attr("width", (b) => Math.abs(x(b[1]) - x(0)))
      .attr("y", 3).attr("height", 16).attr("fill", (b, i) => ["#495057", "#f08c00", "#3b5bdb", "#adb5bd", "#ced4da"][i]);
    // Values beside the zero line, on the side away from the bar.
    g.append("text").attr("x", (b) => (b[1] >= 0 ? x(b[1]) + 4 : x(0) + 4)).attr("y", 15)
      .attr("class", "value").text((b) => num(b[1]));
    const randomRow = bars.findIndex((b) => b[0].startsWith("random"));
    svg.append("g").selectAll("circle").data(f.random_draws || []).join("circle")
      .attr("cx", (v) => x(v)).attr("cy", 10 + randomRow * 30 + 11).attr("r", 3).attr("fill", "#495057");
    svg.append("g").attr("class", "axis").attr("transform", `translate(0,${H - 26})`).call(d3.axisBottom(x).ticks(6));
    svg.append("line").attr("x1", x(0)).attr("x2", x(0)).attr("y1", 4).attr("y2", H - 26).attr("stroke", "#868e96");
    return el("div", { id: "faithfulness" },
      el("p", {}, `${f.metric} on ${f.n_prompts} prompts: the circuit alone keeps `, el("b", {}, pct(f.kept)),
        " of what the transcoder-replaced model reaches; random circuits of the same size keep ", pct(f.random_kept), "."),
      svg.node(),
      f.curve ? null : el("p", { class: "hint" },
        "The metric-vs-size curve is not stored in the catalog; `circuitcat circuit verify NAME --plot curve.png` draws it."));
  }

  function features(g) {
    const rows = g.nodes.filter((n) => n.kind === "feature").sort((a, b) => b.score - a.score);
    return table([
      { title: "feature", cell: (n) => featureLink(n.id, n.name) },
      { title: "score", class: "num", cell: (n) => num(n.score) },
      { title: "works on", cell: (n) => n.prompts_on },
      { title: "promotes", cell: (n) => n.top_logits },
      { title: "description", cell: (n) => n.description || "" },
    ], rows, { id: "circuit-features" });
  }

  function paths(g) {
    if (!g.paths.length) return el("p", { class: "muted" }, "no token → feature → target paths");
    return table([
      { title: "token", cell: (p) => JSON.stringify(p.token) },
      { title: "features", cell: (p) => p.features.flatMap((u, i) => [i ? " → " : "", featureLink(u)]) },
      { title: "target", cell: (p) => targetName(p.target) },
      { title: "score", class: "num", cell: (p) => signed(p.score) },
      { title: "prompts", class: "num", cell: (p) => p.n_prompts },
    ], g.paths);
  }

  function render(g) {
    const c = g.circuit;
    document.title = `${c.name} · circuitcat`;
    const box = el("div", { class: "graph", id: "circuit-graph" });
    const perRow = el("input", { type: "number", min: 1, max: 200, value: 15, id: "per-row" });
    const redraw = () => {
      box.replaceChildren();
      ccGraph.draw(box, graphSpec(g, Number(perRow.value) || 15));
    };
    perRow.addEventListener("change", redraw);
    main.replaceChildren(
      el("h1", {}, c.name, el("span", { class: "uid" }, c.uid)),
      el("p", { class: "sub" }, `task ${c.task} · transcoder set ${c.set_uid} · ${c.n_features} features from ${c.params.n_prompts ?? "?"} prompt graphs · method ${c.method}`),
      el("p", {}, el("a", { href: `/compare?a=${encodeURIComponent(c.uid)}`, id: "compare-link" }, "compare with another circuit")),
      section("Graph",
        el("div", { class: "controls" }, el("label", {}, "strongest edges into each layer ", perRow),
          el("span", { class: "hint" }, "edge weight: attribution between members, mean per prompt; hover for values, click a feature to open it")),
        ccGraph.legend([["token", "token"], ["feature", "feature"], ["target", "target: logit difference"]]), box),
      el("div", { class: "grid two" },
        section("Faithfulness", faithfulness(c.faithfulness)),
        section("Strongest paths", paths(g))),
      section("Features", features(g)),
      section("Heads", table([
        { title: "layer", cell: (h) => h.layer }, { title: "head", cell: (h) => h.head },
        { title: "score", class: "num", cell: (h) => num(h.score) }], g.heads)),
      section("Interventions", g.interventions.length
        ? table([
          { title: "op", cell: (i) => i.op },
          { title: "features of this circuit", class: "num", cell: (i) => i.n_circuit_features },
          { title: "on", cell: (i) => i.task || i.prompt },
          { title: "before", class: "num", cell: (i) => num(i.before) },
          { title: "after", class: "num", cell: (i) => num(i.after) },
          { title: "predicted", class: "num", cell: (i) => num(i.predicted) },
          { title: "flag", cell: (i) => (i.flagged ? "not carried by the graph" : "ok") },
          { title: "by", cell: (i) => i.author }], g.interventions, { id: "circuit-interventions" })
        : el("p", { class: "muted", id: "circuit-interventions" }, "no saved interventions on its features"))
    );
    redraw();
  }

  cc.api(cc.apiPath("/api/circuits", cc.pageUid())).then(render).catch((e) => cc.showError(main, e));
})();
