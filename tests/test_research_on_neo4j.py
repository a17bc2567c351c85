"""The automatic descriptions and the research questions on Neo4j: the toy catalog there
(conftest's toy_neo4j) answers `prompt show`, `prompt compare` and `feature find` exactly as the
embedded store does, and carries every feature's automatic description."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from circuitcat.catalog import CatalogStore, open_store

from .neo4j_server import Neo4jServer

pytestmark = pytest.mark.neo4j


def test_descriptions_and_research_questions_on_both_stores(
    toy_catalog: str, toy_neo4j: CatalogStore
) -> None:
    """Automatic descriptions travel with the catalog and the research questions (prompt show,
    prompt compare, feature find) answer the same on Neo4j as on the embedded store."""
    from circuitcat.catalog.descriptions import auto_description
    from circuitcat.catalog.research import compare_prompts, find_features, prompt_position

    with open_store(toy_catalog, read_only=True) as lb:
        rows = lb.query("attributed_prompts", set_uid="toy-years/tc-v1", task="greater-than")
        a, b = rows[0]["uid"], rows[1]["uid"]
        answers = [
            (
                prompt_position(s, a, 8, limit=1000),
                compare_prompts(s, a, b, limit=1000),
                find_features(s, "45", "46..99", layer=0, limit=1000),
            )
            for s in (lb, toy_neo4j)
        ]
    assert _rounded(answers[0]) == _rounded(answers[1])
    assert answers[0][0]["features"] and answers[0][1]["shared"] and answers[0][2]
    live = "MATCH (f:Feature) WHERE f.density > 0 AND f.auto_description IS NULL RETURN count(f)"
    assert toy_neo4j.run_cypher(live).rows == [[0]]
    f = toy_neo4j.query("feature", uid="toy-years/tc-v1/L0/156")[0]
    assert f["auto_description"] == auto_description(
        f["layer"], f["density"], f["top_contexts"], f["top_logits"]
    )


def _rounded(value: Any) -> Any:
    """Floats to 6 significant digits (the engines sum in different orders), tuples as lists."""
    if isinstance(value, float):
        return float(f"{value:.6g}")
    if isinstance(value, list | tuple):
        return [_rounded(v) for v in value]
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value


def test_describe_writes_the_same_on_both_stores(clean_neo4j: Neo4jServer, tmp_path: Path) -> None:
    """`feature describe` on each store: the same descriptions, and the label stays."""
    from circuitcat.catalog.descriptions import describe_set
    from circuitcat.catalog.labels import add_label

    from . import catalog_data as data

    found = {}
    for uri in (str(tmp_path / "lb"), clean_neo4j.uri):
        with open_store(uri, user=clean_neo4j.user, password=clean_neo4j.password) as s:
            data.write_all(s)
            add_label(s, data.feature_uids(1)[0], "year after 32", "alice")
            labelled = "MATCH (f:Feature) WHERE f.label IS NOT NULL RETURN f.uid, f.label"
            before = s.run_cypher(labelled).rows
            # The set's layers are 0 and 1 (6 features each); layer 2 is outside it.
            assert describe_set(s, data.SET.uid) == {data.SET.uid: 12}
            assert s.run_cypher(labelled).rows == before and before
            rows = s.run_cypher(
                "MATCH (f:Feature) RETURN f.uid, f.auto_description ORDER BY f.uid"
            ).rows
            found[uri] = rows
    lb, neo = found.values()
    assert lb == neo
    described = [text for uid, text in lb if "/L2/" not in uid]
    assert len(described) == 12 and all(t.startswith("L") and "density" in t for t in described)
