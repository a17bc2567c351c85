"""circuitcat's per-prompt attribution next to circuit-tracer's own `attribute`, per transcoder
kind, on the real-format fixtures (tests/fixtures/real_formats).

    /tmp/refvenv/bin/python bench/compare_circuit_tracer.py [--write]

Run with the throwaway venv of tests/fixtures/make_real_formats.py (circuit-tracer 0.5.0
installed --no-deps beside transformer-lens 3.9 and sae-lens); it runs circuitcat's side in the
project venv (`.venv/bin/python bench/compare_circuit_tracer.py --ours ...`, a subprocess), so no
circuit-tracer code enters the project and no circuitcat code enters the throwaway venv.

Per case (a tiny model family x a circuit-tracer layout: cross-layer, skip, JumpReLU, TopK;
on Gemma 2 and 3, sets writing `mlp.hook_out` (before the post-MLP RMSNorm ln2_post): a
circuit-tracer ReLU set and Gemma Scope's JumpReLU params.npz; and Gemma Scope 2, JumpReLU +
affine skip writing `hook_mlp_out`, on Gemma 3):
1. circuitcat: `load_pair` loads the model folder and the set as every job does (unprocessed,
   ln2's affine folded into the encoders and the skip), `attribute` builds the graph of the
   fixture prompt for the logit of the model's top next token; the model's HookedTransformer
   config and weights are handed over as they are.
2. circuit-tracer: its `TransformerLensReplacementModel` is built from that config and those
   weights (its `from_config` path; no hub), with the transcoders loaded by its own loaders
   from the same fixture folder (`load_clt`, `load_transcoder_set`; TopK set in memory, as its
   files cannot carry it); `attribute` with a custom target, the unembedding column of the same
   token (not demeaned, as circuitcat's LogitTarget).
3. The edges between nodes both graphs have are compared: features and errors at positions > 0
   (circuit-tracer zeroes position 0), token nodes only for rotary models (circuit-tracer's token
   node is the token embedding alone; circuitcat's adds the positional one), the logit target.
   Reported: Pearson correlation and max abs diff over all shared edges and over the top 100
   by |w|, and the largest |w| for scale.

With --write the figures go to bench/compare_circuit_tracer.json and docs/concepts.md's
"Checked against circuit-tracer" table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "real_formats"
OURS_PYTHON = ROOT / ".venv" / "bin" / "python"
RESULTS = Path(__file__).with_suffix(".json")
DOC = ROOT / "docs" / "concepts.md"
CASES = [
    (family, layout)
    for family in ("gpt2", "llama")
    for layout in (
        "circuit-tracer-clt",
        "circuit-tracer-skip",
        "circuit-tracer-jumprelu",
        "circuit-tracer-topk",
    )
] + [
    # Gemma-2/3 sets that write `mlp.hook_out`, the MLP's output before ln2_post
    ("gemma2", "circuit-tracer"),
    ("gemma2", "gemmascope-npz-jumprelu"),  # Gemma Scope: JumpReLU, params.npz
    ("gemma3", "circuit-tracer"),
    ("gemma3", "gemmascope2"),  # Gemma Scope 2: JumpReLU + affine skip, writes hook_mlp_out
]
SPECIAL_LOADERS = {"gemmascope-npz-jumprelu": "gemma-scope", "gemmascope2": "gemma-scope-2"}
TOPK = {"circuit-tracer-topk": 8}  # circuit-tracer writes TopK sets like ReLU ones
TOP = 100
Key = tuple[Any, ...]


# --------------------------------------------------------------------------------------------
# circuitcat's side (project venv)


def ours(family: str, layout: str, out: Path) -> None:
    """circuitcat's graph, and the model's config and weights, into `out` (torch.save)."""
    from safetensors.torch import load_file

    from circuitcat.ingest.attribution import LogitTarget, NodeKind, attribute
    from circuitcat.ingest.inputs import load_pair

    torch.set_num_threads(1)
    model_dir = FIXTURES / "models" / family
    topk = TOPK.get(layout)
    loaded, tset = load_pair(
        str(model_dir),
        str(FIXTURES / "transcoders" / family / layout),
        activation=f"topk:{topk}" if topk else None,
    )
    tokens = load_file(str(model_dir / "reference.safetensors"))["tokens"].reshape(-1)
    with torch.no_grad():
        token = int(loaded.model(tokens[None])[0, -1].argmax())
    graph = attribute(loaded, tset, tokens, LogitTarget(token), batch_size=64)
    names = {NodeKind.FEATURE: "F", NodeKind.ERROR: "E", NodeKind.TOKEN: "T"}
    keys = []
    for kind, layer, pos, index in zip(
        *(getattr(graph, c).tolist() for c in ("kind", "layer", "pos", "index")), strict=True
    ):
        name = names.get(NodeKind(kind), "B" if kind == NodeKind.BIAS else "L")
        keys.append((name, layer, pos, index) if name == "F" else (name, layer, pos))
    torch.save(
        {
            "cfg": loaded.model.cfg.to_dict(),
            "state_dict": loaded.model.state_dict(),
            "tokens": tokens,
            "token": token,
            "kind": tset.kind,
            "keys": keys,
            "edges": (graph.src, graph.dst, graph.w),
        },
        out,
    )


# --------------------------------------------------------------------------------------------
# circuit-tracer's side (throwaway venv)


def _offline_circuit_tracer() -> None:
    """No hub here; circuit-tracer 0.5 imports a constant huggingface-hub 1.x dropped (see
    tests/fixtures/make_real_formats.py)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants

    if not hasattr(huggingface_hub.constants, "HF_HUB_ENABLE_HF_TRANSFER"):
        huggingface_hub.constants.HF_HUB_ENABLE_HF_TRANSFER = False  # type: ignore[attr-defined]


def ct_transcoders(family: str, layout: str) -> Any:
    import yaml
    from circuit_tracer.transcoder.activation_functions import TopK
    from circuit_tracer.transcoder.cross_layer_transcoder import load_clt
    from circuit_tracer.transcoder.single_layer_transcoder import load_transcoder_set

    folder = FIXTURES / "transcoders" / family / layout
    config = yaml.safe_load((folder / "config.yaml").read_text())
    hooks = {k: config[k] for k in ("feature_input_hook", "feature_output_hook")}
    cpu = {"device": torch.device("cpu"), "dtype": torch.float32}
    lazy = {"lazy_decoder": False, "lazy_encoder": False}
    if layout.endswith("-clt"):
        return load_clt(str(folder), **hooks, **cpu, **lazy)
    # hf://<org>/<repo>/<file> entries sit at <file> in the fixture folder
    paths = {
        i: str(folder / (e.removeprefix("hf://").split("/", 2)[-1] if e.startswith("hf://") else e))
        for i, e in enumerate(config["transcoders"])
    }
    # circuit-tracer picks its Gemma Scope 2 loader from the hub repo id, which these local
    # fixtures lack: name it, as load_transcoders does for a gemma-scope(-2) repo
    special = SPECIAL_LOADERS.get(layout)
    tset = load_transcoder_set(
        paths, scan="fixtures", **hooks, **cpu, **lazy, special_load_fn=special
    )
    for tc in tset:
        if layout in TOPK:
            tc.activation_function = TopK(TOPK[layout])
    return tset


def _own_rotary_tables(model: Any) -> None:
    """circuit-tracer 0.5's TransformerLens backend shares one RoPE sin/cos table across all
    blocks (`_deduplicate_attention_buffers` keeps the last block's). Gemma 3's local layers use
    another rotary base than its global ones, so with one table its forward is not the model's
    (logits off by 0.45 on the gemma3 fixture, from blocks.0.attn.hook_rot_q on). Give each
    block back its own table, as transformer_lens builds it; other families have one base."""
    from transformer_lens import HookedTransformer

    if getattr(model.cfg, "rotary_base_local", None) is None:
        return
    fresh = HookedTransformer(model.cfg)
    for mine, built in zip(model.blocks, fresh.blocks, strict=True):
        if hasattr(built.attn, "rotary_sin"):
            mine.attn.rotary_sin = built.attn.rotary_sin.to(mine.attn.rotary_sin)
            mine.attn.rotary_cos = built.attn.rotary_cos.to(mine.attn.rotary_cos)


def ct_model(family: str, layout: str, handed: dict[str, Any]) -> Any:
    """circuit-tracer's TransformerLens replacement model on the handed config and weights (its
    from_config path, no hub), each layer with its own rotary table."""
    _offline_circuit_tracer()
    from circuit_tracer.replacement_model.replacement_model_transformerlens import (
        TransformerLensReplacementModel,
    )
    from transformer_lens import HookedTransformerConfig
    from transformers import AutoTokenizer

    cfg = HookedTransformerConfig.from_dict(handed["cfg"])
    tokenizer = AutoTokenizer.from_pretrained(str(FIXTURES / "models" / family))
    model = TransformerLensReplacementModel(cfg, tokenizer=tokenizer)
    model.load_state_dict(handed["state_dict"])
    model._configure_replacement_model(ct_transcoders(family, layout))
    _own_rotary_tables(model)
    return model


def theirs(family: str, layout: str, handed: dict[str, Any]) -> tuple[list[Key], torch.Tensor]:
    """circuit-tracer's node keys and dense adjacency [target, source]."""
    model = ct_model(family, layout, handed)  # sets circuit-tracer up offline first
    from circuit_tracer.attribution.attribute import attribute
    from circuit_tracer.attribution.targets import CustomTarget

    cfg = model.cfg
    vec = model.unembed.W_U[:, handed["token"]].detach().clone()
    graph = attribute(
        handed["tokens"],
        model,
        attribution_targets=[CustomTarget("logit", 1.0, vec)],
        batch_size=64,
    )
    n_layers, n_pos = cfg.n_layers, len(handed["tokens"])
    keys: list[Key] = [("F", *map(int, f)) for f in graph.active_features[graph.selected_features]]
    keys += [("E", layer, pos) for layer in range(n_layers) for pos in range(n_pos)]
    keys += [("T", -1, pos) for pos in range(n_pos)]
    keys += [("L", n_layers, n_pos - 1)]
    return keys, graph.adjacency_matrix


# --------------------------------------------------------------------------------------------
# comparison


def shared(key: Key, rotary: bool) -> bool:
    """A node both graphs hold with the same meaning (see the module docstring)."""
    kind, pos = key[0], key[2]
    if kind in ("F", "E"):
        return pos > 0
    return kind == "L" or (kind == "T" and rotary)


def compare(handed: dict[str, Any], ct_keys: list[Key], adj: torch.Tensor) -> dict[str, Any]:
    """Both graphs as dense matrices over the shared nodes; every entry that is an edge in
    either graph is compared (an edge one graph lacks counts as 0 there)."""
    rotary = handed["cfg"]["positional_embedding_type"] == "rotary"
    ct_index = {k: i for i, k in enumerate(ct_keys)}
    nodes = [k for k in handed["keys"] if shared(k, rotary) and k in ct_index]
    pos = {k: i for i, k in enumerate(nodes)}
    mine = torch.zeros(len(nodes), len(nodes), dtype=torch.float64)
    src, dst, w = handed["edges"]
    for s, d, value in zip(src.tolist(), dst.tolist(), w.tolist(), strict=True):
        ks, kd = handed["keys"][s], handed["keys"][d]
        if ks in pos and kd in pos:
            mine[pos[kd], pos[ks]] += value
    rows = torch.tensor([ct_index[k] for k in nodes])
    theirs = adj[rows][:, rows].double()
    edge = (mine != 0) | (theirs != 0)
    a, b = mine[edge], theirs[edge]
    top = a.abs().argsort(descending=True)[:TOP]
    return {
        "kind": handed["kind"],
        "target_token": handed["token"],
        "shared_nodes": {
            kind: sum(1 for k in nodes if k[0] == kind) for kind in ("F", "E", "T", "L")
        },
        "features_only_in": {
            "circuitcat": sum(
                1 for k in handed["keys"] if k[0] == "F" and shared(k, rotary) and k not in ct_index
            ),
            "circuit_tracer": sum(1 for k in ct_keys if k[0] == "F" and k not in pos),
        },
        "shared_edges": int(edge.sum()),
        "edges_only_in": {
            "circuitcat": int(((mine != 0) & (theirs == 0)).sum()),
            "circuit_tracer": int(((theirs != 0) & (mine == 0)).sum()),
        },
        "corr_all": _corr(a, b),
        "max_abs_diff_all": float((a - b).abs().max()),
        f"corr_top{TOP}": _corr(a[top], b[top]),
        f"max_abs_diff_top{TOP}": float((a[top] - b[top]).abs().max()),
        "max_abs_w": float(a.abs().max()),
    }


def _corr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.corrcoef(torch.stack([a, b]))[0, 1])


def run_case(family: str, layout: str, tmp: Path) -> dict[str, Any]:
    out = tmp / f"{family}-{layout}.pt"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    cmd = [str(OURS_PYTHON), __file__, "--ours", family, layout, str(out)]
    subprocess.run(cmd, check=True, cwd=ROOT, env=env)
    handed = torch.load(out, weights_only=False)
    ct_keys, adj = theirs(family, layout, handed)
    return {"family": family, "layout": layout, **compare(handed, ct_keys, adj)}


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| family | layout | kind | shared edges | corr (all) | max abs diff (all) | "
        f"corr (top {TOP}) | max abs diff (top {TOP}) | max abs w |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['family']} | {r['layout']} | {r['kind']} | {r['shared_edges']} | "
            f"{r['corr_all']:.7f} | {r['max_abs_diff_all']:.1e} | {r[f'corr_top{TOP}']:.7f} | "
            f"{r[f'max_abs_diff_top{TOP}']:.1e} | {r['max_abs_w']:.2f} |"
        )
    return "\n".join(lines)


def write(results: list[dict[str, Any]]) -> None:
    from importlib.metadata import version

    RESULTS.write_text(
        json.dumps({"circuit_tracer": version("circuit-tracer"), "cases": results}, indent=1) + "\n"
    )
    replace_marked(DOC, "circuit-tracer-comparison", table(results))


def replace_marked(doc: Path, marker: str, body: str) -> None:
    """Put `body` between `<!-- marker -->` and `<!-- /marker -->` in `doc` (when both are
    there), keeping the rest of the file."""
    text = doc.read_text()
    start, end = f"<!-- {marker} -->", f"<!-- /{marker} -->"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        doc.write_text(f"{head}{start}\n{body}\n{end}{rest.split(end, 1)[1]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ours", nargs=3, metavar=("FAMILY", "LAYOUT", "OUT"))
    parser.add_argument("--write", action="store_true", help="update the JSON and the docs")
    args = parser.parse_args()
    if args.ours:
        ours(args.ours[0], args.ours[1], Path(args.ours[2]))
        return
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        results = [run_case(family, layout, Path(tmp)) for family, layout in CASES]
    print(table(results))
    if args.write:
        write(results)


if __name__ == "__main__":
    sys.exit(main())
