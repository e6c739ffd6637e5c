"""Shared test fixtures: where the specs live and small helpers to write specs on the fly."""

from __future__ import annotations

import importlib.util
import textwrap
from pathlib import Path

import pytest
from hypothesis import settings

# TensorFlow and Triton (which torch.export and torch.compile import) each bundle LLVM: importing
# TensorFlow first makes a later Triton import crash the process with a segfault. Triton first works.
if importlib.util.find_spec("triton") is not None:
    import triton  # noqa: F401

# property tests draw the same examples on every run (CI stays reproducible);
# `pytest --hypothesis-profile explore` draws new examples each run, to hunt for bugs
settings.register_profile("default", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile("default")

ROOT = Path(__file__).resolve().parent.parent
SPECS_DIR = ROOT / "specs"
BAD_SPECS_DIR = Path(__file__).resolve().parent / "specs"
ALL_SPECS = sorted(SPECS_DIR.glob("*.yaml"))
ZOO_SPECS = sorted((SPECS_DIR / "zoo").glob("*.yaml"))  # torchvision's families, written with modules


@pytest.fixture
def write_spec(tmp_path):
    """Write a dedented YAML text to tmp_path/NAME and return its path."""

    def write(text: str, name: str = "spec.yaml") -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return path

    return write


def assert_matches_golden(source: str, golden: Path) -> None:
    """Compare generated source with its checked-in golden copy; NETSPEC_UPDATE_GOLDEN=1 rewrites it."""
    import os

    if os.environ.get("NETSPEC_UPDATE_GOLDEN"):
        golden.write_text(source)
    assert golden.exists(), f"{golden} is missing: run with NETSPEC_UPDATE_GOLDEN=1 to create it"
    assert source == golden.read_text(), f"generated source differs from {golden}; review, then NETSPEC_UPDATE_GOLDEN=1"
