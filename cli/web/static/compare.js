// The compare page: two circuits side by side (/compare?a=UID&b=UID), their shared features and
// heads highlighted in both graphs, and the overlap beside random circuits of the same sizes.
"use strict";

(() => {
  const { el, num, section, table, featureLink } = cc;
  const main = document.getElementById("page");

  // One circuit's layered graph; members the other circuit has too carry the class "shared".
  function graphSpec(g, shared) {
    const maxScore = d3.max(g.nodes, (n) => Math.abs(n.score || 0)) || 1;
    const rows = [{ row: -1, label: "tokens" }];
    for (let l = 0; l < g.n_layers; l++) rows.push({ row: l, label: `L${l}` });
    rows.push({ row: g.n_layers, label: g.circuit.faithfulness.metric || "metric" });
    const nodes = g.nodes.map((n) => ({
      ...n,
      size: n.kind === "target" ? 0.6 : Math.abs(n.score || 0) / maxScore,
      name: n.kind === "token" ? JSON.stringify(n.name) : n.name,
      href: n.kind === "feature" ? cc.featureHref(n.id) : null,
      info: n.kind === "feature"
        ? [["score", num(n.score)], shared.has(n.id) ? "in both circuits" : "in this circuit only"]
        : [],
    }));
    const rowOf = new Map(nodes.map((n) => [n.id, n.row]));
    const byRow = d3.group(g.links, (l) => rowOf.get(l.target));
    const links = [...byRow.values()].flatMap((ls) =>
      ls.sort((a, b) => Math.abs(b.weight) - Math.abs(a.weight)).slice(0, 10))
      .map((l) => ({ ...l, info: [["mean per prompt", num(l.weight)]] }));
    return { nodes, links, rows };
  }

  function side(g, shared, id) {
    const box = el("div", { class: "graph", id });
    const c = g.circuit;
    const card = section(`${c.name}`,
      el("p", { class: "sub" }, el("a", { href: cc.circuitHref(c.uid) }, c.uid), ` · task ${c.task} · ${c.n_features} features`),
      box);
    return { card, draw: () => {
      ccGraph.draw(box, graphSpec(g, shared));
      for (const node of box.querySelectorAll("g.node")) {
        if (shared.has(node.dataset.id)) node.classList.add("shared");
      }
    } };
  }

  const pm = ([mean, sd], digits = 3) => `${num(mean, digits)} ± ${num(sd, digits)}`;

  function overlapTable(cmp) {
    return table([
      { title: "members", cell: (o) => o.kind },
      { title: "A", class: "num", cell: (o) => o.n_a },
      { title: "B", class: "num", cell: (o) => o.n_b },
      { title: "shared", class: "num", cell: (o) => o.shared },
      { title: "random: shared", class: "num", cell: (o) => pm(o.null_shared, 2) },
      { title: "Jaccard", class: "num", cell: (o) => num(o.jaccard) },
      { title: "random: Jaccard", class: "num", cell: (o) => pm(o.null_jaccard) },
      { title: "score-weighted", class: "num", cell: (o) => num(o.weighted) },
      { title: "random: weighted", class: "num", cell: (o) => pm(o.null_weighted) },
    ], [cmp.features, cmp.heads], { id: "compare-overlap" });
  }

  function sharedTable(cmp) {
    const rows = [...cmp.features.members, ...cmp.heads.members];
    if (!rows.length) return el("p", { class: "muted", id: "compare-shared" }, "no shared member");
    return table([
      { title: "member", cell: (m) => (m.uid.includes("/H") && !/\/L\d+\/\d+$/.test(m.uid) ? m.uid : featureLink(m.uid)) },
      { title: "layer", class: "num", cell: (m) => m.layer },
      { title: "score in A", class: "num", cell: (m) => num(m.score_a) },
      { title: "score in B", class: "num", cell: (m) => num(m.score_b) },
    ], rows, { id: "compare-shared" });
  }

  function picker(circuits, a, b) {
    const select = (name, chosen) => el("select", { name, "aria-label": name },
      circuits.map((c) => el("option", { value: c.uid, selected: c.uid === chosen }, `${c.name} (${c.set_uid})`)));
    return el("form", { class: "controls", method: "get", action: "/compare", id: "compare-form" },
      el("label", {}, "A ", select("a", a)), el("label", {}, " B ", select("b", b)),
      el("button", { type: "submit" }, "compare"));
  }

  async function load() {
    const circuits = await cc.api("/api/circuits");
    const a = cc.param("a") || (circuits[0] || {}).uid;
    const b = cc.param("b") || (circuits.find((c) => c.uid !== a) || circuits[0] || {}).uid;
    document.title = "Compare circuits · circuitcat";
    if (!a || !b) {
      main.replaceChildren(el("h1", {}, "Compare circuits"), el("p", { class: "muted" }, "the catalog holds no circuit"));
      return;
    }
    const [ga, gb, cmp] = await Promise.all([
      cc.api(cc.apiPath("/api/circuits", a)), cc.api(cc.apiPath("/api/circuits", b)),
      cc.api(`/api/compare?a=${encodeURIComponent(a)}&b=${encodeURIComponent(b)}`),
    ]);
    const shared = new Set([...cmp.features.members, ...cmp.heads.members].map((m) => m.uid));
    const left = side(ga, shared, "compare-a"), right = side(gb, shared, "compare-b");
    main.replaceChildren(
      el("h1", {}, "Compare circuits"),
      picker(circuits, a, b),
      el("p", { class: "sub" }, `matching: ${cmp.matching} · random: ${cmp.draws} pairs of circuits with the same sizes per layer (mean ± sd)`),
      section("Overlap", overlapTable(cmp)),
      el("div", { class: "grid two" }, left.card, right.card),
      el("p", { class: "hint" }, "shared members are ringed in both graphs"),
      section("Shared members", sharedTable(cmp)));
    left.draw();
    right.draw();
  }

  load().catch((e) => cc.showError(main, e));
})();
