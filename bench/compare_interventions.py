"""circuitcat's interventions next to circuit-tracer's own `ReplacementModel.feature_intervention`,
per transcoder kind and per circuit-tracer mode, on the real-format fixtures.

    /tmp/refvenv/bin/python bench/compare_interventions.py [--write]

Run as bench/compare_circuit_tracer.py is, with the throwaway venv of
tests/fixtures/make_real_formats.py (circuit-tracer 0.5.0 installed --no-deps beside
transformer-lens 3.9): circuitcat's side runs in the project venv (`.venv/bin/python
bench/compare_interventions.py --ours ...`, a subprocess), so no circuit-tracer code enters the
project and no circuitcat code enters the throwaway venv. The model and the transcoders are
built for circuit-tracer as bench/compare_circuit_tracer.py builds them (its helpers are reused).

Per case (gpt2 and llama x circuit-tracer's cross-layer, skip, JumpReLU and TopK layouts), on
the fixture prompt, two interventions at layer 0 (never at position 0, which circuit-tracer
zeroes in the activations it subtracts from):
- zero: the 3 most active features at position 5 set to 0;
- clamp: the 2 most active features at the last position set to CLAMP;
each run in five of circuit-tracer's modes (MODES): live (`freeze_attention=False`),
attention frozen (its default), `constrained_layers` spanning every layer,
`constrained_layers=range(0, 1)` (the edited layer held) and `range(1, 2)` (the edit acts only
through what layer-0 features write into layer 1: nothing for a per-layer set). The logits at
every position are compared with circuitcat's (`Freeze.circuit_tracer` gives the matching
frozen pass; live is circuitcat's actual pass).

With --write: circuit-tracer's logits go to tests/fixtures/circuit_tracer_interventions
.safetensors and the inputs (tokens, interventions, modes) to its .json, which
tests/test_interventions_reference.py checks circuitcat against; the figures go to
bench/compare_interventions.json and docs/concepts.md's table.
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
sys.path.insert(0, str(ROOT))
from bench.compare_circuit_tracer import (  # noqa: E402
    FIXTURES,
    OURS_PYTHON,
    TOPK,
    ct_model,
    replace_marked,
)

RESULTS = Path(__file__).with_suffix(".json")
REFERENCE = ROOT / "tests" / "fixtures" / "circuit_tracer_interventions"
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
] + [  # sets writing the MLP module's output, before Gemma's post-MLP norm
    ("gemma2", "circuit-tracer"),
    ("gemma2", "gemmascope-npz-jumprelu"),
    ("gemma3", "circuit-tracer"),
]
CLAMP = 4.0
ZERO_POS, N_ZERO, N_CLAMP = 5, 3, 2
# mode -> circuit-tracer's feature_intervention arguments; "all" is range(n_layers)
MODES: dict[str, dict[str, Any]] = {
    "live": {"freeze_attention": False, "constrained_layers": None},
    "attention": {"freeze_attention": True, "constrained_layers": None},
    "constrained_all": {"freeze_attention": True, "constrained_layers": "all"},
    "constrained_0": {"freeze_attention": True, "constrained_layers": [0]},
    "constrained_1": {"freeze_attention": True, "constrained_layers": [1]},
}


def layers_of(mode: dict[str, Any], n_layers: int) -> list[int] | None:
    c = mode["constrained_layers"]
    return list(range(n_layers)) if c == "all" else c


# --------------------------------------------------------------------------------------------
# circuitcat's side (project venv)


def interventions(z0: torch.Tensor, n_pos: int) -> dict[str, dict[str, Any]]:
    """The two interventions, chosen from layer 0's clean activations [pos, d_transcoder]."""
    return {
        "zero": {
            "layer": 0,
            "position": ZERO_POS,
            "features": z0[ZERO_POS].topk(N_ZERO).indices.tolist(),
            "value": 0.0,
        },
        "clamp": {
            "layer": 0,
            "position": n_pos - 1,
            "features": z0[n_pos - 1].topk(N_CLAMP).indices.tolist(),
            "value": CLAMP,
        },
    }


def ours_logits(
    model: Any, tset: Any, tokens: torch.Tensor, spec: dict[str, Any], mode: dict[str, Any] | None
) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """circuitcat's logits [pos, d_vocab] after `spec` in circuit-tracer's `mode` (None: the
    clean run), and the clean activations."""
    from circuitcat.ingest.interventions import Freeze, Intervention
    from circuitcat.ingest.interventions.edits import resolve
    from circuitcat.ingest.interventions.run import clean_pass, edited_pass, pad_batch
    from circuitcat.ingest.tasks import TaskPrompt

    prompt = TaskPrompt("", tuple(tokens.tolist()), "", (0,), ())
    batch, last = pad_batch([prompt], 0)
    clean = clean_pass(model, tset, batch, last, [prompt], "logit")
    if mode is None:
        return clean.logits[0], clean.z
    op = "zero" if spec["value"] == 0.0 else "clamp"
    iv = Intervention(
        op,
        tuple((spec["layer"], f) for f in spec["features"]),
        value=None if op == "zero" else spec["value"],
        positions=(spec["position"],),
    )
    edit = resolve(iv, tset, [len(tokens)], batch.shape[1])
    n_layers = model.cfg.n_layers
    if not mode["freeze_attention"] and mode["constrained_layers"] is None:
        return edited_pass(model, tset, batch, edit, None)[0], clean.z  # the actual pass
    freeze = Freeze.circuit_tracer(n_layers, mode["freeze_attention"], layers_of(mode, n_layers))
    return edited_pass(model, tset, batch, edit, clean, True, freeze)[0], clean.z


def ours(family: str, layout: str, out: Path) -> None:
    """circuitcat's logits per intervention and mode, the inputs, and the model's config and
    weights, into `out` (torch.save)."""
    from safetensors.torch import load_file

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
    clean_logits, z = ours_logits(loaded.model, tset, tokens, {}, None)
    specs = interventions(z[0][0], len(tokens))
    logits = {
        (op, name): ours_logits(loaded.model, tset, tokens, spec, mode)[0]
        for op, spec in specs.items()
        for name, mode in MODES.items()
    }
    torch.save(
        {
            "cfg": loaded.model.cfg.to_dict(),
            "state_dict": loaded.model.state_dict(),
            "tokens": tokens,
            "kind": tset.kind,
            "specs": specs,
            "clean": clean_logits,
            "logits": logits,
        },
        out,
    )


# --------------------------------------------------------------------------------------------
# circuit-tracer's side (throwaway venv)


def theirs(family: str, layout: str, handed: dict[str, Any]) -> dict[tuple[str, str], Any]:
    """circuit-tracer's logits [pos, d_vocab] per (op, mode) from `feature_intervention`."""
    model = ct_model(family, layout, handed)
    n_layers, tokens = model.cfg.n_layers, handed["tokens"]
    out = {}
    for op, spec in handed["specs"].items():
        edits = [(spec["layer"], spec["position"], f, spec["value"]) for f in spec["features"]]
        for name, mode in MODES.items():
            constrained = layers_of(mode, n_layers)
            logits, _ = model.feature_intervention(
                tokens,
                edits,
                constrained_layers=range(constrained[0], constrained[-1] + 1)
                if constrained
                else None,
                freeze_attention=mode["freeze_attention"],
            )
            out[(op, name)] = logits.reshape(len(tokens), -1).detach().float()
    return out


def run_case(family: str, layout: str, tmp: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The figures of one case, and what the reference stores of it."""
    out = tmp / f"{family}-{layout}.pt"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [str(OURS_PYTHON), __file__, "--ours", family, layout, str(out)]
    subprocess.run(cmd, check=True, cwd=ROOT, env=env)
    handed = torch.load(out, weights_only=False)
    ct = theirs(family, layout, handed)
    diff = {
        name: max(float((handed["logits"][(op, name)] - ct[(op, name)]).abs().max())
                  for op in handed["specs"])
        for name in MODES
    }  # fmt: skip
    # how far the modes are apart in circuit-tracer itself (what a wrong mode would miss by)
    spread = {
        name: max(float((ct[(op, name)] - ct[(op, "live")]).abs().max()) for op in handed["specs"])
        for name in MODES
        if name != "live"
    }
    effect = max(float((ct[(op, "live")] - handed["clean"]).abs().max()) for op in handed["specs"])
    figures = {
        "family": family,
        "layout": layout,
        "kind": handed["kind"],
        "max_abs_diff": diff,
        "max_abs_effect_live": effect,
        "max_abs_mode_vs_live": spread,
    }
    stored = {
        "family": family,
        "layout": layout,
        "kind": handed["kind"],
        "tokens": handed["tokens"].tolist(),
        "interventions": handed["specs"],
        "logits": {f"{family}/{layout}/{op}/{name}": t for (op, name), t in ct.items()},
    }
    return figures, stored


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| family | layout | kind | " + " | ".join(MODES) + " | effect (live) |",
        "|---|---|---|" + "---|" * len(MODES) + "---|",
    ]
    for r in results:
        cells = " | ".join(f"{r['max_abs_diff'][m]:.1e}" for m in MODES)
        lines.append(
            f"| {r['family']} | {r['layout']} | {r['kind']} | {cells} | "
            f"{r['max_abs_effect_live']:.2f} |"
        )
    return "\n".join(lines)


def write(results: list[dict[str, Any]], stored: list[dict[str, Any]]) -> None:
    from importlib.metadata import version

    from safetensors.torch import save_file

    ct_version = version("circuit-tracer")
    tensors = {k: v.contiguous() for s in stored for k, v in s.pop("logits").items()}
    save_file(tensors, str(REFERENCE.with_suffix(".safetensors")))
    inputs = {
        "generator": "bench/compare_interventions.py",
        "circuit_tracer": ct_version,
        "modes": MODES,
        "logits": "circuit_tracer_interventions.safetensors, key family/layout/op/mode, "
        "[pos, d_vocab] float32, from ReplacementModel.feature_intervention",
        "cases": stored,
    }
    REFERENCE.with_suffix(".json").write_text(json.dumps(inputs, indent=1) + "\n")
    RESULTS.write_text(
        json.dumps({"circuit_tracer": ct_version, "cases": results}, indent=1) + "\n"
    )
    replace_marked(DOC, "intervention-comparison", table(results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ours", nargs=3, metavar=("FAMILY", "LAYOUT", "OUT"))
    parser.add_argument("--write", action="store_true", help="update the reference and docs")
    args = parser.parse_args()
    if args.ours:
        ours(args.ours[0], args.ours[1], Path(args.ours[2]))
        return
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        pairs = [run_case(family, layout, Path(tmp)) for family, layout in CASES]
    results = [p[0] for p in pairs]
    print(table(results))
    print(json.dumps([r["max_abs_mode_vs_live"] for r in results]))
    if args.write:
        write(results, [p[1] for p in pairs])


if __name__ == "__main__":
    sys.exit(main())
