"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_city(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic city capture (``blocknerf synth OUT --grid 1x1 --size 64x48``); its directory."""
    from blocknerf.cli.main import main

    out = tmp_path_factory.mktemp("tiny_city") / "city"
    assert main(["synth", str(out), "--grid", "1x1", "--size", "64x48", "--quiet"]) == 0
    return out
