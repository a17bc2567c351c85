"""docker/: the files no engine here can build are at least consistent with the project.
hadolint lints the Dockerfile in `make test`; these checks catch drift from pyproject."""

from __future__ import annotations

import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _package_dirs() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return set(project["tool"]["setuptools"]["package-dir"].values())


def test_ingest_image_installs_every_package_as_non_root() -> None:
    dockerfile = (ROOT / "docker" / "ingest.Dockerfile").read_text()
    ignore = (ROOT / ".dockerignore").read_text().split()
    for folder in _package_dirs():
        assert f"COPY {folder} ./{folder}" in dockerfile, folder
        assert f"!{folder}/" in ignore, folder
    users = [line.split()[1] for line in dockerfile.splitlines() if line.startswith("USER ")]
    assert users and not users[-1].startswith(("0", "root"))


def test_compose_ingest_profile_reserves_a_gpu_and_waits_for_neo4j() -> None:
    compose = yaml.safe_load((ROOT / "docker" / "compose.yml").read_text())
    ingest = compose["services"]["ingest"]
    assert ingest["profiles"] == ["ingest"]
    assert (ROOT / "docker" / ingest["build"]["context"] / ingest["build"]["dockerfile"]).exists()
    assert ingest["depends_on"]["neo4j"]["condition"] == "service_healthy"
    (device,) = ingest["deploy"]["resources"]["reservations"]["devices"]
    assert device["capabilities"] == ["gpu"] and device["driver"] == "nvidia"
    assert ingest["environment"]["CIRCUITCAT_STORE"] == "bolt://neo4j:7687"
    assert ingest["environment"]["CIRCUITCAT_NEO4J_PASSWORD"] is None  # taken from the shell
    assert "profiles" not in compose["services"]["neo4j"]  # `up -d` still starts only Neo4j
