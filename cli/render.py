"""A picture of a stored circuit: year tokens at the bottom, layers upwards, the metric on top.

Nodes are sized by their circuit score; the strongest edges into each layer are drawn by their
summed attribution (blue positive, red negative). Read from the store by named queries;
.png/.svg by matplotlib, .html as the SVG in a page a browser opens offline.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from circuitcat.catalog import CatalogStore
from circuitcat.catalog.circuits import circuit_members
from circuitcat.catalog.errors import CircuitcatError

FORMATS = (".png", ".svg", ".html")


def _layout(
    features: list[dict[str, Any]], tokens: list[dict[str, Any]], n_layers: int
) -> dict[str, tuple[float, float]]:
    rows: dict[int, list[str]] = {-1: [t["uid"] for t in tokens]}
    for f in features:
        rows.setdefault(int(f["layer"]), []).append(f["uid"])
    pos = {}
    for y, uids in rows.items():
        for i, uid in enumerate(uids):
            pos[uid] = ((i + 1) / (len(uids) + 1), float(y + 1))
    pos["target"] = (0.5, float(n_layers + 1))
    return pos


Line = tuple[str, str, float]


def render_circuit(
    store: CatalogStore, circuit_uid: str, out: Path, title: str = "", per_layer: int = 15
) -> Path:
    """Draw the stored circuit `circuit_uid` into `out` (.png, .svg or .html)."""
    if out.suffix not in FORMATS:
        raise CircuitcatError(f"cannot write {out.name}: use one of {', '.join(FORMATS)}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = circuit_members(store, circuit_uid)
    n_layers = 1 + max((int(f["layer"]) for f in m.features), default=0)
    pos = _layout(m.features, m.tokens, n_layers)
    fig, ax = plt.subplots(figsize=(10, 1.6 * (n_layers + 2)), dpi=110)
    _draw_edges(ax, _strongest_lines(m.edges, m.target_edges, pos, per_layer), pos)
    _draw_nodes(ax, m.features, m.tokens, pos)
    ax.set_yticks(range(n_layers + 2), ["tokens", *(f"L{i}" for i in range(n_layers)), "target"])
    ax.set_xticks([])
    ax.set_ylim(-0.5, n_layers + 1.5)
    ax.set_title(title or circuit_uid)
    for side in ("top", "right", "bottom"):
        ax.spines[side].set_visible(False)
    return _save(fig, out)


def _strongest_lines(
    edges: list[dict[str, Any]],
    into_target: list[dict[str, Any]],
    pos: dict[str, tuple[float, float]],
    per_layer: int,
) -> list[Line]:
    """Only the strongest edges into each layer: every edge of a dense circuit is unreadable."""
    lines = [(e["src"], e["dst"], e["total"]) for e in edges]
    lines += [(e["src"], "target", e["total"]) for e in into_target]
    by_row: dict[float, list[Line]] = {}
    for line in lines:
        if line[0] in pos and line[1] in pos:
            by_row.setdefault(pos[line[1]][1], []).append(line)
    return [e for row in by_row.values() for e in sorted(row, key=lambda e: -abs(e[2]))[:per_layer]]


def _draw_edges(ax: Any, lines: list[Line], pos: dict[str, tuple[float, float]]) -> None:
    biggest = max((abs(w) for *_, w in lines), default=1.0) or 1.0
    for src, dst, w in sorted(lines, key=lambda e: abs(e[2])):
        (x0, y0), (x1, y1) = pos[src], pos[dst]
        color = "tab:blue" if w > 0 else "tab:red"
        width = 0.3 + 4 * abs(w) / biggest
        ax.plot([x0, x1], [y0, y1], color=color, linewidth=width, alpha=0.6, zorder=1)


def _draw_nodes(
    ax: Any,
    features: list[dict[str, Any]],
    tokens: list[dict[str, Any]],
    pos: dict[str, tuple[float, float]],
) -> None:
    top = max((abs(float(f["score"])) for f in features), default=1.0) or 1.0
    for f in features:
        x, y = pos[f["uid"]]
        size = 60 + 600 * abs(float(f["score"])) / top
        ax.scatter([x], [y], s=size, color="tab:orange", edgecolor="black", zorder=2)
        name = f"L{f['layer']}/{f['feature_index']}"
        ax.annotate(name, (x, y), fontsize=7, ha="center", va="center", zorder=3)
    boxes = [(pos[t["uid"]], t["token"], 8, "lightgrey") for t in tokens]
    boxes.append((pos["target"], "metric", 10, "lightgreen"))
    for (x, y), text, size, colour in boxes:
        box = {"boxstyle": "round", "fc": colour}
        ax.text(x, y, text, ha="center", va="center", fontsize=size, bbox=box, zorder=3)


def _save(fig: Any, out: Path) -> Path:
    import matplotlib.pyplot as plt

    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".html":
        buf = io.StringIO()
        fig.savefig(buf, format="svg", bbox_inches="tight")
        out.write_text(
            f"<!doctype html><meta charset='utf-8'><title>circuit</title>\n{buf.getvalue()}"
        )
    else:
        fig.savefig(out, bbox_inches="tight")
    plt.close(fig)
    return out
