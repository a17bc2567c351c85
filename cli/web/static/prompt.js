// The prompt-graph page: one stored prompt's attribution graph, pruned by cumulative influence
// on the target (as circuit-tracer's viewer does), nodes at their token positions.
"use strict";

(() => {
  const { el, num, signed, section } = cc;
  const main = document.getElementById("page");

  function spec(graph, threshold, maxEdges) {
    const setUid = graph.metadata.circuitcat.transcoder_set;
    const target = graph.nodes.find((n) => n.is_target_logit);
    const top = Number(target.layer);
    const rowOf = (n) => (n.layer === "E" ? -1 : Number(n.layer));
    const kept = graph.nodes.filter((n) => n.is_target_logit || n.layer === "E" || (n.influence ?? 1) <= threshold);
    const maxAct = Math.max(1e-9, ...kept.map((n) => Math.abs(n.activation || 0)));
    const nodes = kept.map((n) => {
      const feature = n.feature_type === "cross layer transcoder";
      const kind = n.is_target_logit ? "target" : n.layer === "E" ? "token" : feature ? "feature" : "error";
      const index = Number(n.node_id.split("_")[1]);
      return {
        id: n.node_id, kind, row: rowOf(n), col: n.ctx_idx, // biases too sit at the positions they feed
        name: kind === "feature" ? `L${n.layer}/${index}` : kind === "token" ? "" : kind === "target" ? "metric" : n.feature_type.split(" ")[0],
        title: kind === "feature" ? n.clerp || `L${n.layer}/${index}` : `${n.feature_type} @ ${n.ctx_idx}`,
        size: kind === "feature" ? Math.abs(n.activation || 0) / maxAct : kind === "target" ? 0.6 : 0.1,
        href: kind === "feature" ? cc.featureHref(`${setUid}/L${n.layer}/${index}`) : null,
        info: [["position", n.ctx_idx < 0 ? "none" : `${n.ctx_idx} (${JSON.stringify(graph.metadata.prompt_tokens[n.ctx_idx])})`],
          ["activation", num(n.activation)], ["influence (cumulative)", num(n.influence)],
          ...(kind === "feature" ? ["click to open"] : [])],
      };
    });
    const ids = new Set(nodes.map((n) => n.id));
    const links = graph.links.filter((l) => ids.has(l.source) && ids.has(l.target))
      .sort((a, b) => Math.abs(b.weight) - Math.abs(a.weight)).slice(0, maxEdges);
    // Tokens without a kept edge add nothing but clutter; keep the rest.
    const touched = new Set(links.flatMap((l) => [l.source, l.target]));
    const shown = nodes.filter((n) => n.kind !== "token" || touched.has(n.id));
    const rows = [{ row: -1, label: "tokens" }];
    for (let l = 0; l < top; l++) rows.push({ row: l, label: l === top - 1 ? "final" : `L${l}` });
    rows.push({ row: top, label: "metric" });
    const columns = graph.metadata.prompt_tokens.map((t, i) => `${i}:${t}`);
    return { nodes: shown, links, rows, columns };
  }

  function render(info, graph) {
    const meta = graph.metadata;
    document.title = `${info.task} prompt · circuitcat`;
    const box = el("div", { class: "graph", id: "prompt-graph" });
    const threshold = el("input", { type: "range", min: 0.1, max: 1, step: 0.05, value: 0.8, id: "node-threshold" });
    const edges = el("input", { type: "number", min: 10, max: 5000, value: 250, id: "max-edges" });
    const counts = el("span", { class: "hint" });
    const redraw = () => {
      const s = spec(graph, Number(threshold.value), Number(edges.value) || 250);
      counts.textContent = `${s.nodes.length} of ${graph.nodes.length} nodes, ${s.links.length} of ${graph.links.length} edges (influence ≤ ${threshold.value})`;
      box.replaceChildren();
      ccGraph.draw(box, s);
    };
    threshold.addEventListener("input", redraw);
    edges.addEventListener("change", redraw);
    const download = el("a", { href: cc.apiPath("/api/prompts", info.uid) + `/graph?set=${encodeURIComponent(meta.circuitcat.transcoder_set)}`, download: `${meta.slug}.json` }, "graph JSON");
    main.replaceChildren(
      el("h1", {}, info.text, el("span", { class: "uid" }, info.uid)),
      el("p", { class: "sub" }, `task ${info.task} · answer ${JSON.stringify(info.answer)}${info.start_year ? ` · start year ${info.start_year}` : ""} · metric ${num(info.metric_value)} · set ${meta.circuitcat.transcoder_set} · `,
        download, " for circuit-tracer's viewer or Neuronpedia"),
      section("Attribution graph",
        el("div", { class: "controls" }, el("label", {}, "node threshold ", threshold), el("label", {}, "edges ", edges), counts),
        ccGraph.legend([["token", "token (embedding)"], ["feature", "feature"], ["error", "error / bias"], ["target", "metric"]],
          "feature size ∝ activation"),
        box),
      section("Strongest edges", strongest(graph)),
      positionPanel(info, meta.circuitcat.transcoder_set),
      comparePanel(info, meta.circuitcat.transcoder_set));
    redraw();
  }

  const described = (r) => r.description || "";

  // `prompt show UID --position N`: the features at one position, and the metric's direct inputs.
  function positionPanel(info, set) {
    const select = el("select", { id: "position-select" },
      info.tokens.map((t, i) => el("option", { value: i }, `${i}: ${t}`)));
    select.value = String(info.tokens.length - 1);
    const out = el("div", { id: "position-features" });
    const drivers = el("div", { id: "metric-inputs" });
    const show = async () => {
      const r = await cc.api(cc.apiPath("/api/prompts", info.uid) +
        `/position?pos=${select.value}&set=${encodeURIComponent(set)}`);
      out.replaceChildren(el("p", { class: "hint" }, `${r.n_features} features at position ${r.position} (${JSON.stringify(r.token)})`),
        cc.table([
          { title: "feature", cell: (f) => cc.featureLink(f.uid) },
          { title: "activation", class: "num", cell: (f) => num(f.activation) },
          { title: "description", cell: described }], r.features, { id: "position-table" }));
      drivers.replaceChildren(cc.table([
        { title: "node", cell: (d) => (d.feature_index !== null && d.feature_index !== undefined ? cc.featureLink(d.uid)
          : d.token ? `token ${JSON.stringify(d.token)}` : `${d.error_kind || "node"} (L${d.layer})`) },
        { title: "position", class: "num", cell: (d) => d.pos },
        { title: "w", class: "num", cell: (d) => signed(d.w) },
        { title: "description", cell: described }], r.metric_inputs, { id: "metric-table" }));
    };
    select.addEventListener("change", () => show().catch((e) => cc.showError(out, e)));
    show().catch((e) => cc.showError(out, e));
    return el("div", { class: "grid two" },
      section("Features at one position", el("label", {}, "position ", select), out),
      section("What drives the metric (edges into it)", drivers));
  }

  // `prompt compare A B`: the features this prompt's graph shares with another's.
  function comparePanel(info, set) {
    const other = el("input", { name: "other", size: 40, id: "compare-input", placeholder: "another prompt uid (prompt list)" });
    const out = el("div", { id: "compare-result" });
    const form = el("form", { class: "inline", id: "compare-form" }, other, el("button", { type: "submit" }, "Compare"));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      try {
        const r = await cc.api(`/api/prompt-compare?a=${encodeURIComponent(info.uid)}&b=${encodeURIComponent(other.value.trim())}&set=${encodeURIComponent(set)}`);
        out.replaceChildren(el("p", { class: "hint" }, `${r.n_shared} shared features (this prompt has ${r.n_features_a}, the other ${r.n_features_b})`),
          cc.table([
            { title: "feature", cell: (f) => cc.featureLink(f.uid) },
            { title: "here", class: "num", cell: (f) => num(f.activation_a) },
            { title: "there", class: "num", cell: (f) => num(f.activation_b) },
            { title: "description", cell: described }], r.shared, { id: "compare-table" }));
      } catch (e) {
        cc.showError(out, e);
      }
    });
    return section("Features shared with another prompt", form, out);
  }

  function strongest(graph) {
    const byId = new Map(graph.nodes.map((n) => [n.node_id, n]));
    const name = (id) => { const n = byId.get(id); return n.clerp || `${n.feature_type} ${n.node_id}`; };
    const rows = [...graph.links].sort((a, b) => Math.abs(b.weight) - Math.abs(a.weight)).slice(0, 15);
    return cc.table([
      { title: "from", cell: (l) => name(l.source) }, { title: "to", cell: (l) => name(l.target) },
      { title: "weight", class: "num", cell: (l) => signed(l.weight) }], rows);
  }

  async function load() {
    const uid = cc.pageUid();
    const info = await cc.api(cc.apiPath("/api/prompts", uid));
    const set = cc.param("set") || info.graph_sets[0];
    if (!set) throw new Error(`prompt ${uid} has no stored attribution graph`);
    const graph = await cc.api(cc.apiPath("/api/prompts", uid) + `/graph?set=${encodeURIComponent(set)}`);
    render(info, graph);
  }

  load().catch((e) => cc.showError(main, e));
})();
