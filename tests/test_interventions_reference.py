"""Interventions against circuit-tracer's own: the logits circuit-tracer 0.5's
`ReplacementModel.feature_intervention` gives (live, attention frozen, `constrained_layers`) on
the real-format fixtures, committed by bench/compare_interventions.py (run in a throwaway venv;
circuit-tracer is not installed here), and circuitcat's `intervene` with the matching
`Freeze.circuit_tracer` mode, to float tolerance.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from circuitcat.ingest.inputs import load_pair
from circuitcat.ingest.interventions import Freeze, Intervention, intervene
from circuitcat.ingest.interventions.edits import resolve
from circuitcat.ingest.interventions.run import FROZEN, clean_pass, edited_pass, pad_batch
from circuitcat.ingest.tasks import TaskPrompt

FIXTURES = Path(__file__).parent / "fixtures"
REFERENCE = json.loads((FIXTURES / "circuit_tracer_interventions.json").read_text())
LOGITS = load_file(str(FIXTURES / "circuit_tracer_interventions.safetensors"))
REAL = FIXTURES / "real_formats"
MODES: dict[str, dict[str, Any]] = REFERENCE["modes"]
CASES = REFERENCE["cases"]
ATOL = 1e-5  # logits; measured max 7.2e-7 (docs/concepts.md)


def case_id(case: dict[str, Any]) -> str:
    return f"{case['family']}-{case['layout'].removeprefix('circuit-tracer-')}"


@cache
def loaded(family: str, layout: str) -> tuple[Any, Any]:
    """The fixture model and set as every job loads them (TopK declared: its files can't say)."""
    topk = "topk:8" if layout.endswith("-topk") else None
    pair = load_pair(
        str(REAL / "models" / family), str(REAL / "transcoders" / family / layout), activation=topk
    )
    return pair[0].model, pair[1]


def freeze_of(mode: dict[str, Any], n_layers: int) -> Freeze:
    layers = mode["constrained_layers"]
    layers = list(range(n_layers)) if layers == "all" else layers
    return Freeze.circuit_tracer(n_layers, mode["freeze_attention"], layers)


def to_intervention(spec: dict[str, Any]) -> Intervention:
    zero = spec["value"] == 0.0
    return Intervention(
        "zero" if zero else "clamp",
        tuple((spec["layer"], f) for f in spec["features"]),
        value=None if zero else spec["value"],
        positions=(spec["position"],),
    )


def all_logits(model: Any, tset: Any, tokens: list[int], iv: Intervention,
               freeze: Freeze | None) -> torch.Tensor:  # fmt: skip
    """[pos, d_vocab] after `iv`: the actual pass (None) or the frozen one held per `freeze`,
    through the passes `intervene` runs."""
    prompt = TaskPrompt("", tuple(tokens), "", (0,), ())
    batch, last = pad_batch([prompt], 0)
    clean = clean_pass(model, tset, batch, last, [prompt], "logit")
    edit = resolve(iv, tset, [len(tokens)], batch.shape[1])
    return edited_pass(model, tset, batch, edit, clean if freeze else None, True,
                       freeze or FROZEN)[0]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_intervene_gives_circuit_tracers_logits_in_every_mode(case: dict[str, Any]) -> None:
    model, tset = loaded(case["family"], case["layout"])
    n_layers, tokens = model.cfg.n_layers, case["tokens"]
    for op, spec in case["interventions"].items():
        iv = to_intervention(spec)
        for name, mode in MODES.items():
            ref = LOGITS[f"{case['family']}/{case['layout']}/{op}/{name}"]
            freeze = freeze_of(mode, n_layers)
            # every position's logits, in the mode's frozen pass
            got = all_logits(model, tset, tokens, iv, freeze)
            diff = float((got - ref).abs().max())
            assert diff < ATOL, f"{op} {name}: logits differ by {diff}"
            # intervene's own numbers on the last position, for two tokens (metric 'logit')
            for token in {int(ref[-1].argmax()), int(ref[-1].argmin())}:
                prompt = TaskPrompt("", tuple(tokens), "", (token,), ())
                r = intervene(model, tset, [prompt], "logit", iv, freeze=freeze)
                assert r.frozen == pytest.approx(float(ref[-1, token]), abs=ATOL), (op, name)
                if name == "live":
                    assert r.after == pytest.approx(float(ref[-1, token]), abs=ATOL), op
        # circuit-tracer's live mode is circuitcat's actual pass
        live = LOGITS[f"{case['family']}/{case['layout']}/{op}/live"]
        assert float((all_logits(model, tset, tokens, iv, None) - live).abs().max()) < ATOL


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_the_modes_are_told_apart(case: dict[str, Any]) -> None:
    """The reference's modes are far apart next to the tolerance, so a mode mapped wrong fails
    the test above; circuitcat's default frozen model is none of them."""
    model, tset = loaded(case["family"], case["layout"])
    key = f"{case['family']}/{case['layout']}/clamp"
    modes = ("live", "attention", "constrained_all")
    for i, a in enumerate(modes):
        for b in modes[i + 1 :]:
            gap = float((LOGITS[f"{key}/{a}"] - LOGITS[f"{key}/{b}"]).abs().max())
            assert gap > 100 * ATOL, (a, b, gap)
    ours_default = all_logits(
        model, tset, case["tokens"], to_intervention(case["interventions"]["clamp"]), FROZEN
    )
    for name in modes:
        assert float((ours_default - LOGITS[f"{key}/{name}"]).abs().max()) > 100 * ATOL, name
