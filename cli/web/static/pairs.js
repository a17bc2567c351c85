// Across graphs: every stored prompt graph in which feature A feeds feature B (one MATCH on the
// catalog; a store of one JSON blob per graph cannot answer it), plus their virtual weights.
"use strict";

(() => {
  const { el, num, signed, section, table, featureLink } = cc;
  const main = document.getElementById("page");

  function form() {
    const f = el("form", { class: "inline", method: "get", action: "/pairs", id: "pair-form" },
      el("label", {}, "feature A (source)", el("input", { name: "src", size: 34, value: cc.param("src") || "", required: true })),
      el("label", {}, "feature B (target)", el("input", { name: "dst", size: 34, value: cc.param("dst") || "", required: true })),
      el("button", { type: "submit" }, "Find prompts"));
    return f;
  }

  function results(r) {
    const big = Math.max(1e-9, ...r.prompts.map((p) => Math.abs(p.total)));
    return [
      section(["Prompts where ", featureLink(r.src), " feeds ", featureLink(r.dst)],
        r.prompts.length ? table([
          { title: "prompt", cell: (p) => el("a", { href: cc.promptHref(p.prompt) }, p.text) },
          { title: "answer", cell: (p) => p.answer },
          { title: "edge (summed)", class: "num", cell: (p) => signed(p.total) },
          { title: "", class: "w", cell: (p) => cc.weightBar(p.total, big) },
          { title: "edges", class: "num", cell: (p) => p.n_edges }], r.prompts, { id: "pair-prompts" })
          : el("p", { class: "muted", id: "pair-prompts" }, "in no stored prompt graph")),
      section("Virtual weights (input-invariant)",
        r.virtual_weights.length ? table([
          { title: "via", cell: (w) => w.via }, { title: "w", class: "num", cell: (w) => signed(w.w) },
          { title: "rank", class: "num", cell: (w) => num(w.w_rank) }], r.virtual_weights)
          : el("p", { class: "muted" }, "none stored (not among the top-k inputs of B)")),
    ];
  }

  async function start() {
    const parts = [el("h1", {}, "Across graphs"),
      el("p", { class: "sub" }, "Every stored prompt graph in which one feature feeds another. Full uids or the short L0/156 form."), form()];
    main.replaceChildren(...parts);
    if (cc.param("src") && cc.param("dst")) {
      const q = new URLSearchParams({ src: cc.param("src"), dst: cc.param("dst") });
      try { main.append(...results(await cc.api(`/api/pairs?${q}`))); } catch (e) { main.append(el("p", { class: "error" }, e.message)); }
    }
  }

  start();
})();
