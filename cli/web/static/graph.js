// A layered graph drawn with d3: rows from bottom (tokens) to top (the metric), zoom and pan,
// hover for values (a node's edges stay lit, the rest fade), click a feature to open it.
// Positive edges blue and solid, negative red and dashed; width by |weight|.
"use strict";

const ccGraph = (() => {
  const COLORS = { token: "#6c757d", feature: "#f08c00", error: "#adb5bd", target: "#2f9e44", head: "#7048e8" };
  const SPACING = 40; // px between nodes sharing a row and a column
  const SHAPES = { token: d3.symbolSquare, feature: d3.symbolCircle, error: d3.symbolDiamond, target: d3.symbolStar, head: d3.symbolTriangle };

  // spec: {nodes: [{id, kind, row, col?, name, size, href?, info: [[k, v], ...]}],
  //        links: [{source, target, weight, info}], rows: [{row, label}], columns?: [labels]}
  function draw(container, spec) {
    const rows = spec.rows.map((r) => r.row);
    const rowGap = 90;
    const cols = spec.columns ? columnLayout(spec) : null;
    const width = cols ? cols.width : 1180;
    const height = rowGap * (rows.length + 0.2);
    const yOf = (row) => height - rowGap * (rows.indexOf(row) + 0.6);
    place(spec, width, cols);

    const svg = d3.select(container).append("svg").attr("viewBox", `0 0 ${width} ${height}`)
      .attr("preserveAspectRatio", "xMidYMid meet").attr("data-testid", "graph");
    const root = svg.append("g");
    svg.call(d3.zoom().scaleExtent([0.3, 12]).on("zoom", (e) => root.attr("transform", e.transform)));

    root.append("g").selectAll("text").data(spec.rows).join("text").attr("class", "rowlabel")
      .attr("x", 8).attr("y", (r) => yOf(r.row) + 4).text((r) => r.label);
    if (spec.columns) {
      root.append("g").selectAll("text").data(spec.columns).join("text").attr("class", "rowlabel")
        .attr("text-anchor", "middle").attr("x", (c, i) => cols.centers[i]).attr("y", height - 8)
        .text((c) => c);
    }
    const byId = new Map(spec.nodes.map((n) => [n.id, n]));
    const links = spec.links.filter((l) => byId.has(l.source) && byId.has(l.target));
    const biggest = d3.max(links, (l) => Math.abs(l.weight)) || 1;
    const link = root.append("g").attr("fill", "none").selectAll("path").data(links).join("path")
      .attr("class", "link")
      .attr("d", (l) => curve(byId.get(l.source), byId.get(l.target), yOf))
      .attr("stroke", (l) => (l.weight >= 0 ? cc.POS : cc.NEG))
      .attr("stroke-dasharray", (l) => (l.weight >= 0 ? null : "5,3"))
      .attr("stroke-width", (l) => 0.6 + 5 * Math.abs(l.weight) / biggest)
      .attr("stroke-opacity", (l) => 0.25 + 0.6 * Math.abs(l.weight) / biggest);

    const tip = d3.select(container).append("div").attr("class", "tooltip");
    const node = root.append("g").selectAll("g").data(spec.nodes).join("g")
      .attr("class", (n) => "node" + (n.href ? " clickable" : ""))
      .attr("data-id", (n) => n.id).attr("data-kind", (n) => n.kind)
      .attr("transform", (n) => `translate(${n.x},${yOf(n.row)})`);
    node.append("path").attr("d", (n) => d3.symbol(SHAPES[n.kind] || d3.symbolCircle, 40 + 260 * (n.size || 0))())
      .attr("fill", (n) => COLORS[n.kind] || "#888").attr("stroke", "#fff").attr("stroke-width", 1);
    node.append("text").attr("y", (n) => (n.kind === "token" ? 22 : -10)).attr("text-anchor", "middle")
      .text((n) => n.name);

    const show = (event, lines) => {
      const box = container.getBoundingClientRect();
      tip.style("display", "block").selectAll("div").data(lines).join("div")
        .text((d) => (Array.isArray(d) ? `${d[0]}: ${d[1]}` : d));
      // Beside the pointer, kept inside the graph's box (it clips what sticks out).
      const { width, height } = tip.node().getBoundingClientRect();
      const x = Math.min(event.clientX - box.left + 14, box.width - width - 4);
      const y = Math.min(event.clientY - box.top + 10, box.height - height - 4);
      tip.style("left", `${Math.max(4, x)}px`).style("top", `${Math.max(4, y)}px`);
    };
    const hide = () => tip.style("display", "none");
    node.on("mouseenter", (event, n) => {
      const near = new Set([n.id]);
      link.classed("dim", (l) => !(l.source === n.id || l.target === n.id));
      links.forEach((l) => { if (l.source === n.id) near.add(l.target); if (l.target === n.id) near.add(l.source); });
      node.classed("dim", (m) => !near.has(m.id));
      show(event, [n.title || n.name, ...(n.info || [])]);
    }).on("mousemove", (event, n) => show(event, [n.title || n.name, ...(n.info || [])]))
      .on("mouseleave", () => { link.classed("dim", false); node.classed("dim", false); hide(); })
      .on("click", (event, n) => { if (n.href) window.location.href = n.href; });
    link.on("mouseenter", (event, l) => show(event, [
      `${byId.get(l.source).name} → ${byId.get(l.target).name}`, ["weight", cc.signed(l.weight)], ...(l.info || [])]))
      .on("mouseleave", hide);
    return svg.node();
  }

  // Columns (prompt positions) as wide as their most crowded row needs.
  function columnLayout(spec) {
    const need = spec.columns.map(() => 1);
    for (const cell of d3.group(spec.nodes, (n) => n.row, (n) => n.col).values()) {
      for (const [col, nodes] of cell) need[col] = Math.max(need[col], nodes.length);
    }
    const widths = need.map((k) => Math.max(64, SPACING * k));
    const starts = d3.cumsum([110, ...widths]);
    return { widths, centers: widths.map((w, i) => starts[i] + w / 2), width: starts[starts.length - 1] + 20 };
  }

  // x per node: with columns (prompt positions) nodes of one row and column share the column;
  // without, each row is spread evenly, ordered by the mean x of its inputs (fewer crossings).
  function place(spec, width, cols) {
    const byRow = d3.group(spec.nodes, (n) => n.row);
    const xs = new Map();
    const inputs = d3.group(spec.links, (l) => l.target);
    for (const row of spec.rows.map((r) => r.row)) {
      const group = byRow.get(row) || [];
      if (cols) {
        for (const [col, cell] of d3.group(group, (n) => n.col)) {
          cell.sort((a, b) => (b.size || 0) - (a.size || 0));
          cell.forEach((n, i) => { n.x = cols.centers[col] + (i - (cell.length - 1) / 2) * SPACING; });
        }
      } else {
        const key = (n) => {
          const from = (inputs.get(n.id) || []).map((l) => xs.get(l.source)).filter((x) => x !== undefined);
          return from.length ? d3.mean(from) : n.order ?? 0;
        };
        group.forEach((n) => { n.sortKey = key(n); });
        group.sort((a, b) => a.sortKey - b.sortKey || String(a.name).localeCompare(String(b.name)));
        group.forEach((n, i) => { n.x = 110 + ((width - 140) * (i + 0.5)) / group.length; });
      }
      group.forEach((n) => xs.set(n.id, n.x));
    }
  }

  function curve(a, b, yOf) {
    const y1 = yOf(a.row), y2 = yOf(b.row), mid = (y1 + y2) / 2;
    if (y1 === y2) { // within a row (a bias into its layer): an arc above it
      const lift = Math.min(60, 12 + Math.abs(b.x - a.x) / 8);
      return `M${a.x},${y1} C${a.x},${y1 - lift} ${b.x},${y2 - lift} ${b.x},${y2}`;
    }
    return `M${a.x},${y1} C${a.x},${mid} ${b.x},${mid} ${b.x},${y2}`;
  }

  function legend(kinds, sizeText = "node size ∝ score") {
    const { el } = cc;
    const item = (kind, text) => {
      const svg = d3.create("svg").attr("width", 18).attr("height", 18);
      svg.append("path").attr("transform", "translate(9,9)").attr("d", d3.symbol(SHAPES[kind], 90)()).attr("fill", COLORS[kind]);
      return el("span", {}, svg.node(), " ", text);
    };
    const edge = (color, dash, text) => {
      const svg = d3.create("svg").attr("width", 34).attr("height", 10);
      svg.append("line").attr("x1", 2).attr("x2", 32).attr("y1", 5).attr("y2", 5).attr("stroke", color)
        .attr("stroke-width", 3).attr("stroke-dasharray", dash);
      return el("span", {}, svg.node(), " ", text);
    };
    return el("div", { class: "legend", "data-testid": "legend" },
      kinds.map(([k, t]) => item(k, t)),
      edge(cc.POS, null, "positive attribution"), edge(cc.NEG, "5,3", "negative attribution"),
      el("span", {}, `width ∝ |weight|; ${sizeText}; scroll to zoom, drag to pan`));
  }

  return { draw, legend };
})();
