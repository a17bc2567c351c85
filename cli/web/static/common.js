// Shared helpers of circuitcat's pages: API calls, DOM building (text only, never HTML from
// data), links between pages, number formatting, the navigation bar.
"use strict";

const cc = (() => {
  const POS = "#2166ac"; // positive weights (as `circuit render` draws them)
  const NEG = "#b2182b"; // negative weights

  async function api(path, options = {}) {
    const response = await fetch(path, options);
    let body = null;
    try {
      body = await response.json();
    } catch (e) {
      body = { detail: response.statusText };
    }
    if (!response.ok) {
      const detail = Array.isArray(body.detail)
        ? body.detail.map((d) => `${(d.loc || []).join(".")}: ${d.msg}`).join("; ")
        : body.detail;
      const error = new Error(detail || `HTTP ${response.status}`);
      error.status = response.status;
      throw error;
    }
    return body;
  }

  // el("a", {href: "/x", class: "y"}, "text", child, ...): children are nodes or text.
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else if (key === "style") node.setAttribute("style", value);
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const segments = (uid) => uid.split("/").map(encodeURIComponent).join("/");
  const featureHref = (uid) => `/feature/${segments(uid)}`;
  const circuitHref = (uid) => `/circuit/${segments(uid)}`;
  const promptHref = (uid, set) =>
    `/prompt/${segments(uid)}` + (set ? `?set=${encodeURIComponent(set)}` : "");
  const apiPath = (prefix, uid) => `${prefix}/${segments(uid)}`;
  // The uid a page is about: the rest of the path after its first segment.
  const pageUid = () =>
    window.location.pathname.split("/").slice(2).map(decodeURIComponent).join("/");
  const param = (name) => new URLSearchParams(window.location.search).get(name);

  // "toy-years/tc-v1/L0/156" -> "L0/156"
  function shortUid(uid) {
    const parts = String(uid).split("/");
    return parts.length >= 2 ? parts.slice(-2).join("/") : uid;
  }

  function num(value, digits = 3) {
    if (value === null || value === undefined || Number.isNaN(value)) return "n/a";
    const abs = Math.abs(value);
    if (abs !== 0 && (abs < 1e-3 || abs >= 1e5)) return value.toExponential(2);
    return Number(value).toPrecision(digits).replace(/\.?0+$/, "").replace(/\.?0+e/, "e");
  }
  const signed = (value) => (value > 0 ? "+" : "") + num(value);
  const pct = (value) => (value === null || value === undefined ? "n/a" : `${num(100 * value)}%`);

  // A signed weight as a small bar: blue right for positive, red left for negative.
  function weightBar(value, biggest) {
    const share = biggest ? Math.min(Math.abs(value) / biggest, 1) : 0;
    const bar = el("span", {
      class: "bar " + (value >= 0 ? "pos" : "neg"),
      style: `width:${(share * 100).toFixed(1)}%`,
    });
    return el("span", { class: "wbar", title: String(value) }, bar);
  }

  function featureLink(uid, text) {
    return el("a", { href: featureHref(uid), class: "feature-link" }, text || shortUid(uid));
  }

  // A table: columns = [{title, cell: row => node|text, class}]
  function table(columns, rows, attrs = {}) {
    const head = el("tr", {}, columns.map((c) => el("th", { class: c.class }, c.title)));
    const body = rows.map((row) =>
      el("tr", {}, columns.map((c) => el("td", { class: c.class }, c.cell(row))))
    );
    return el("table", attrs, el("thead", {}, head), el("tbody", {}, body));
  }

  function section(title, ...children) {
    return el("section", { class: "card" }, el("h2", {}, title), ...children);
  }

  function showError(target, error) {
    target.replaceChildren(el("p", { class: "error", role: "alert" }, error.message || error));
  }

  function nav() {
    const links = [
      ["/", "Catalog"],
      ["/search", "Search"],
      ["/pairs", "Across graphs"],
      ["/compare", "Compare circuits"],
      ["/cypher", "Cypher"],
    ];
    const bar = el(
      "nav",
      { class: "top" },
      el("a", { href: "/", class: "brand" }, "circuitcat"),
      links.map(([href, text]) => el("a", { href }, text)),
      el(
        "form",
        { class: "quick", action: "/search", method: "get", role: "search" },
        el("input", { name: "q", type: "search", placeholder: "label, token, L0/156 ...", "aria-label": "search" })
      )
    );
    document.body.prepend(bar);
  }

  document.addEventListener("DOMContentLoaded", nav);

  return {
    POS, NEG, api, el, featureHref, circuitHref, promptHref, apiPath, pageUid, param,
    shortUid, num, signed, pct, weightBar, featureLink, table, section, showError,
  };
})();
