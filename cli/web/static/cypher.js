// Read-only Cypher against the catalog, with the server's row limit and time limit.
"use strict";

(() => {
  const { el, section } = cc;
  const main = document.getElementById("page");
  const EXAMPLE = "MATCH (c:Circuit)-[k:CONTAINS]->(f:Feature)\nRETURN c.name, f.uid, k.score\nORDER BY k.score DESC LIMIT 10";

  const text = el("textarea", { rows: 8, id: "cypher-text", spellcheck: "false" }, EXAMPLE);
  const out = el("div", { id: "cypher-result" });
  const run = el("button", { type: "button" }, "Run (read-only)");
  const cell = (v) => (v !== null && typeof v === "object" ? JSON.stringify(v) : v === null ? "" : String(v));
  run.addEventListener("click", async () => {
    out.replaceChildren(el("p", { class: "muted" }, "running…"));
    try {
      const r = await cc.api("/api/cypher", {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ query: text.value }),
      });
      out.replaceChildren(
        el("p", { class: "hint" }, `${r.rows.length} rows${r.truncated ? ` (stopped at the limit of ${r.limit})` : ""}; time limit ${r.timeout_s} s`),
        cc.table(r.columns.map((c, i) => ({ title: c, cell: (row) => cell(row[i]) })), r.rows));
    } catch (e) { cc.showError(out, e); }
  });
  main.replaceChildren(el("h1", {}, "Cypher"),
    el("p", { class: "sub" }, "Read-only: queries that write, load files or URLs, or manage the server are refused."),
    section("Query", text, el("p", {}, run), out));
})();
