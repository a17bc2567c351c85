// The feature page: statistics, activation histogram, top contexts, logits, connections,
// circuits, labels (history and a form that writes with a token).
"use strict";

(() => {
  const { el, num, signed, pct, section, table, featureLink, weightBar } = cc;
  const main = document.getElementById("page");
  const TOKEN_KEY = "circuitcat-token";

  function header(f) {
    const latest = f.labels[0];
    return el(
      "div",
      {},
      el("h1", {}, `L${f.layer}/${f.index}`, el("span", { class: "uid" }, f.uid)),
      el(
        "p",
        { class: "sub" },
        `transcoder set ${f.set_uid} · model ${f.model || "?"} · `,
        el("span", { id: "current-label" }, f.label ? `label: ${f.label}` : "no label yet"),
        latest ? el("span", { class: "muted" }, ` (${latest.author}, ${latest.created_at.slice(0, 16).replace("T", " ")})`) : null
      ),
      // The automatic description (catalog/descriptions.py): what the catalog says of it until
      // a person labels it; a label always wins and this stays below it.
      f.explanation
        ? el("p", { class: f.label ? "sub muted" : "sub", id: "explanation" },
          `explanation: ${f.explanation}` + (f.explanation_score === null ? "" : ` (detection score ${num(f.explanation_score)}, 0.5 is chance)`))
        : null,
      f.auto_description
        ? el("p", { class: f.label || f.explanation ? "sub muted" : "sub", id: "auto-description" }, `automatic description: ${f.auto_description}`)
        : null
    );
  }

  function stats(f) {
    const stat = (k, v, id) => el("div", { class: "stat", id }, el("div", { class: "k" }, k), el("div", { class: "v" }, v));
    return el(
      "div",
      { class: "stats" },
      stat("density (share of tokens)", pct(f.density), "stat-density"),
      stat("mean activation (when firing)", num(f.act_mean), "stat-mean"),
      stat("max activation", num(f.act_max), "stat-max"),
      stat("layer", f.layer),
      stat("index", f.index)
    );
  }

  // Counts per log-spaced bin, with axes; bin 0 holds 0 < a < first edge.
  function histogram(h) {
    const box = el("div", { id: "histogram" });
    if (!h.counts.length || !h.counts.some((c) => c > 0)) {
      box.append(el("p", { class: "muted" }, "no activations recorded (run `circuitcat ingest features`)"));
      return box;
    }
    const W = 360, H = 190, m = { l: 46, r: 10, t: 8, b: 38 };
    const lo = h.edges[0] / Math.sqrt(h.edges[1] / h.edges[0]) ** 2; // room for the underflow bar
    const x = d3.scaleLog().domain([lo, h.edges[h.edges.length - 1]]).range([m.l, W - m.r]);
    const y = d3.scaleLinear().domain([0, d3.max(h.counts)]).nice().range([H - m.b, m.t]);
    const bins = h.counts.map((c, i) => ({ c, x0: i === 0 ? lo : h.edges[i - 1], x1: i === 0 ? h.edges[0] : h.edges[i] }));
    const svg = d3.create("svg").attr("viewBox", `0 0 ${W} ${H}`).attr("width", "100%").attr("role", "img")
      .attr("aria-label", "activation histogram");
    svg.append("g").selectAll("rect").data(bins).join("rect")
      .attr("x", (d) => x(d.x0) + 0.5).attr("width", (d) => Math.max(x(d.x1) - x(d.x0) - 1, 1))
      .attr("y", (d) => y(d.c)).attr("height", (d) => y(0) - y(d.c))
      .attr("fill", (d, i) => (i === 0 ? "#c9ced8" : "#f08c00"))
      .append("title").text((d, i) => (i === 0 ? `below ${num(h.edges[0])}` : `${num(d.x0)} – ${num(d.x1)}`) + `: ${d.c} tokens`);
    svg.append("g").attr("class", "axis").attr("transform", `translate(0,${H - m.b})`)
      .call(d3.axisBottom(x).ticks(6, "~g"));
    svg.append("g").attr("class", "axis").attr("transform", `translate(${m.l},0)`)
      .call(d3.axisLeft(y).ticks(5, "~s"));
    svg.append("text").attr("x", (m.l + W - m.r) / 2).attr("y", H - 4).attr("text-anchor", "middle")
      .attr("class", "rowlabel").text("activation (log scale; grey: below 10⁻³)");
    svg.append("text").attr("transform", `translate(11,${(H - m.b) / 2}) rotate(-90)`).attr("text-anchor", "middle")
      .attr("class", "rowlabel").text("tokens");
    box.append(svg.node());
    return box;
  }

  // Each context's tokens shaded by activation relative to the feature's max; the context's
  // largest activation outlined (found from the activations: the stored `pos` counts padding).
  function contexts(f) {
    const peak = f.act_max || Math.max(1e-9, ...f.top_contexts.map((c) => c.value));
    const argmax = (acts) => acts.reduce((best, a, i) => (a > acts[best] ? i : best), 0);
    const rows = f.top_contexts.map((ctx, i) =>
      el(
        "div",
        { class: "ctx", "data-rank": i },
        el("span", { class: "val" }, num(ctx.value)),
        el(
          "span",
          { class: "toks" },
          ctx.tokens.map((t, j) => {
            const a = ctx.acts[j] || 0;
            const share = Math.max(0, Math.min(a / peak, 1));
            return el("span", {
              class: "tok" + (j === argmax(ctx.acts) ? " peak" : ""),
              style: a > 0 ? `background: rgba(255, 140, 0, ${(0.12 + 0.88 * share).toFixed(3)})` : null,
              title: `activation ${num(a)}`,
            }, t);
          })
        )
      )
    );
    return el("div", { class: "contexts", id: "top-contexts" }, rows.length ? rows : el("p", { class: "muted" }, "no contexts recorded"));
  }

  function logits(f) {
    const biggest = Math.max(1e-9, ...[...f.promoted, ...f.suppressed].map((x) => Math.abs(x.w)));
    const list = (items, cls) =>
      items.map((x) =>
        el("div", { class: "logit" }, el("span", { class: "t" }, JSON.stringify(x.token)),
          el("span", { class: `lb ${cls}`, style: `width:${(70 * Math.abs(x.w) / biggest).toFixed(1)}px` }),
          el("span", { class: "muted" }, signed(x.w)))
      );
    return el("div", { class: "logits", id: "logits" },
      el("div", {}, el("h3", {}, "promotes"), list(f.promoted, "pos")),
      el("div", {}, el("h3", {}, "suppresses"), list(f.suppressed, "neg")));
  }

  const biggestOf = (rows, key) => Math.max(1e-9, ...rows.map((r) => Math.abs(r[key])));

  function weightTable(rows, uidKey, id) {
    if (!rows.length) return el("p", { class: "muted", id }, "none stored");
    const big = biggestOf(rows, "w");
    return table([
      { title: "feature", cell: (r) => featureLink(r[uidKey]) },
      { title: "via", cell: (r) => r.via },
      { title: "w", class: "num", cell: (r) => signed(r.w) },
      { title: "", class: "w", cell: (r) => weightBar(r.w, big) },
    ], rows, { id });
  }

  function promptTable(rows, id) {
    if (!rows.length) return el("p", { class: "muted", id }, "in no stored prompt graph");
    const big = biggestOf(rows, "total");
    const name = (r) =>
      r.feature_index !== null && r.feature_index !== undefined ? featureLink(r.uid)
        : r.token_id !== null && r.token_id !== undefined ? `token ${JSON.stringify(r.token ?? r.token_id)}`
        : r.error_kind ? `${r.error_kind} (L${r.layer})` : r.target ? `target ${r.target}` : r.uid;
    return table([
      { title: "node", cell: name },
      { title: "sum of w", class: "num", cell: (r) => signed(r.total) },
      { title: "", class: "w", cell: (r) => weightBar(r.total, big) },
      { title: "prompts", class: "num", cell: (r) => r.n_prompts },
    ], rows, { id });
  }

  function tokenTable(rows) {
    if (!rows.length) return el("p", { class: "muted" }, "none stored");
    const big = biggestOf(rows, "w");
    return table([
      { title: "token", cell: (r) => JSON.stringify(r.token) },
      { title: "via", cell: (r) => r.via },
      { title: "w", class: "num", cell: (r) => signed(r.w) },
      { title: "", class: "w", cell: (r) => weightBar(r.w, big) },
    ], rows, { id: "input-tokens" });
  }

  function connections(f) {
    const pairs = (uid) => el("a", { href: `/pairs?src=${encodeURIComponent(f.uid)}&dst=${encodeURIComponent(uid)}` }, "prompts");
    return el("div", { class: "grid two" },
      section("Inputs",
        el("h3", {}, "features (virtual weights, input-invariant)"), weightTable(f.inputs.features, "source", "input-features"),
        el("h3", {}, "tokens (de-embedding)"), tokenTable(f.inputs.tokens),
        el("h3", {}, "in stored prompt graphs (summed)"), promptTable(f.inputs.prompt_graphs, "input-prompts")),
      section("Outputs",
        el("h3", {}, "features (virtual weights, input-invariant)"), weightTable(f.outputs.features, "target", "output-features"),
        el("h3", {}, "in stored prompt graphs (summed)"), promptTable(f.outputs.prompt_graphs, "output-prompts"),
        f.outputs.prompt_graphs.some((r) => r.feature_index !== null)
          ? el("p", { class: "hint" }, "Every prompt where it feeds one of these: ",
            pairs(f.outputs.prompt_graphs.find((r) => r.feature_index !== null).uid), " (or pick any pair on Across graphs).")
          : null));
  }

  function circuits(f) {
    if (!f.circuits.length) return el("p", { class: "muted" }, "in no stored circuit");
    return table([
      { title: "circuit", cell: (c) => el("a", { href: cc.circuitHref(c.uid) }, c.name) },
      { title: "task", cell: (c) => c.task },
      { title: "score", class: "num", cell: (c) => num(c.score) },
    ], f.circuits, { id: "feature-circuits" });
  }

  function labels(f) {
    const history = f.labels.length
      ? table([
        { title: "label", cell: (l) => l.text },
        { title: "by", cell: (l) => l.author },
        { title: "when (UTC)", cell: (l) => l.created_at.slice(0, 19).replace("T", " ") },
      ], f.labels, { id: "label-history" })
      : el("p", { class: "muted", id: "label-history" }, "no labels yet");
    const status = el("p", { class: "hint", id: "label-status", role: "status" });
    const saved = window.localStorage.getItem(TOKEN_KEY) || "";
    const form = el("form", { class: "inline", id: "label-form" },
      el("label", {}, "new label", el("input", { name: "text", required: true, maxlength: 500, size: 40 })),
      el("label", {}, "write token", el("input", { name: "token", type: "password", autocomplete: "off", value: saved })),
      el("label", {}, "remember", el("input", { name: "remember", type: "checkbox", checked: Boolean(saved) })),
      el("button", { type: "submit" }, "Save label"));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const data = new FormData(form);
      const token = String(data.get("token") || "");
      if (data.get("remember")) window.localStorage.setItem(TOKEN_KEY, token);
      else window.localStorage.removeItem(TOKEN_KEY);
      status.textContent = "saving…";
      try {
        // The token goes in a header, never in the URL.
        await cc.api("/api/labels", {
          method: "POST",
          headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
          body: JSON.stringify({ feature: f.uid, text: data.get("text") }),
        });
        render(await load());
      } catch (error) {
        status.textContent = error.message;
        status.className = "error";
      }
    });
    return el("div", {}, history, el("h3", {}, "add a label"), form, status,
      el("p", { class: "hint" }, "Labels keep their author and time; the newest is shown everywhere."));
  }

  // Saved interventions on this feature, and a form that runs one (a write token; the
  // server caps prompts and time, and saves the result under the token's user).
  function interventions(f) {
    const saved = f.interventions.length
      ? table([
        { title: "op", cell: (i) => i.op },
        { title: "value", class: "num", cell: (i) => num(i.value) },
        { title: "on", cell: (i) => i.task || i.prompt },
        { title: "before", class: "num", cell: (i) => num(i.before) },
        { title: "after", class: "num", cell: (i) => num(i.after) },
        { title: "predicted", class: "num", cell: (i) => num(i.predicted) },
        { title: "flag", cell: (i) => (i.flagged ? "not carried by the graph" : "ok") },
        { title: "by", cell: (i) => i.author },
      ], f.interventions, { id: "feature-interventions" })
      : el("p", { class: "muted", id: "feature-interventions" }, "no saved interventions");
    const status = el("div", { class: "hint", id: "intervention-status", role: "status" });
    const tok = window.localStorage.getItem(TOKEN_KEY) || "";
    const ops = ["zero", "mean", "clamp", "scale", "steer"].map((o) => el("option", { value: o }, o));
    const form = el("form", { class: "inline", id: "intervention-form" },
      el("label", {}, "op", el("select", { name: "op" }, ...ops)),
      el("label", {}, "value", el("input", { name: "value", size: 6, placeholder: "3xmax" })),
      el("label", {}, "position", el("input", { name: "pos", size: 4, placeholder: "all" })),
      el("label", {}, "task", el("input", { name: "task", size: 12, value: "greater-than" })),
      el("label", {}, "prompts", el("input", { name: "n", type: "number", min: 1, max: 40, value: 20, size: 3 })),
      el("label", {}, "write token", el("input", { name: "token", type: "password", autocomplete: "off", value: tok })),
      el("button", { type: "submit" }, "Run and save"));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const data = new FormData(form);
      const pos = String(data.get("pos") || "").trim();
      status.textContent = "running…";
      status.className = "hint";
      try {
        const r = await cc.api("/api/interventions", {
          method: "POST",
          headers: { "Content-Type": "application/json", Authorization: `Bearer ${data.get("token")}` },
          body: JSON.stringify({
            op: data.get("op"), features: [f.uid], value: String(data.get("value") || "") || null,
            positions: pos ? [Number(pos)] : null, task: data.get("task"), n: Number(data.get("n")),
            set_uid: f.set_uid,
          }),
        });
        status.replaceChildren(el("p", { id: "intervention-result" },
          `${r.metric}: ${num(r.before)} → ${num(r.after)} (frozen ${num(r.frozen)}, predicted ${num(r.predicted)}) · `
          + (r.flagged ? "FLAGGED: the graph's paths do not carry most of this change" : "carried by the graph")
          + (r.saved ? ` · saved as ${r.saved}` : "")));
        const fresh = interventions(await load()).querySelector("#feature-interventions");
        document.getElementById("feature-interventions").replaceWith(fresh);
      } catch (error) {
        status.textContent = error.message;
        status.className = "error";
      }
    });
    return el("div", {}, saved, el("h3", {}, "run one"), form, status,
      el("p", { class: "hint" }, "actual vs the attribution graph's prediction: see docs/concepts.md (Interventions)."));
  }

  async function load() {
    return cc.api(cc.apiPath("/api/features", cc.pageUid()));
  }

  function render(f) {
    document.title = `L${f.layer}/${f.index} · circuitcat`;
    main.replaceChildren(
      header(f),
      stats(f),
      el("div", { class: "grid side" },
        el("div", {},
          section("Activation histogram", histogram(f.histogram)),
          section("Logits (decoder · unembedding)", logits(f)),
          section("Circuits", circuits(f)),
          section("Interventions", interventions(f))),
        el("div", {}, section("Top activating contexts", contexts(f)), section("Label", labels(f)))),
      connections(f)
    );
  }

  load().then(render).catch((e) => cc.showError(main, e));
})();
