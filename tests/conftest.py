"""Shared test fixtures: where the specs live and small helpers to write specs on the fly."""

from __future__ import annotations

import importlib.util
import re
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

from netspec.layers.base import IDS, layout_of

# TensorFlow and Triton (which torch.export and torch.compile import) each bundle LLVM: importing
# TensorFlow first makes a later Triton import crash the process with a segfault. Triton first works.
if importlib.util.find_spec("triton") is not None:
    import triton  # noqa: F401

# property tests draw the same examples on every run (CI stays reproducible);
# `pytest --hypothesis-profile explore` draws new examples each run, to hunt for bugs
settings.register_profile("default", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile("default")

# What each framework marker needs installed (its extra: the framework, safetensors, scikit-learn's
# digits, matplotlib's curves): a core-only install (pip install -e .) skips those tests, saying
# what to install, instead of failing them on an import.
FRAMEWORK_MODULES = {"torch": ("torch", "torchvision", "safetensors", "sklearn", "matplotlib"),
                     "keras": ("keras", "tensorflow", "safetensors", "sklearn", "matplotlib"),
                     "onnx": ("onnx", "onnxscript")}


def pytest_collection_modifyitems(config, items):
    absent = {mark: [m for m in modules if importlib.util.find_spec(m) is None]
              for mark, modules in FRAMEWORK_MODULES.items()}
    for item in items:
        for mark, missing in absent.items():
            if missing and item.get_closest_marker(mark) is not None:
                item.add_marker(pytest.mark.skip(reason=f"needs {', '.join(missing)}: pip install -e '.[{mark}]'"))


ROOT = Path(__file__).resolve().parent.parent
SPECS_DIR = ROOT / "specs"
BAD_SPECS_DIR = Path(__file__).resolve().parent / "specs"
ALL_SPECS = sorted(SPECS_DIR.glob("*.yaml"))
ZOO_SPECS = sorted((SPECS_DIR / "zoo").glob("*.yaml"))  # torchvision's families, written with modules
# the zoo specs written out in full; the others extend them with other depths and widths
ZOO_BASES = [path for path in ZOO_SPECS if not re.search(r"^extends:", path.read_text(), re.M)]
EXAMPLE_SPECS = sorted((SPECS_DIR / "examples").glob("*.yaml"))
# the smallest side a zoo network takes where it is smaller than its published input, when it is
# more than the sizes the tests use (Inception-v3's valid convolutions need 75x75, as torchvision says;
# MaxViT-T's last stage partitions a 7x7 image into 7x7 windows, which takes 224x224)
SMALLEST_SIDE = {"inception_v3": 75, "maxvit_t": 224}


def small_input(spec: Path, side: int) -> tuple[int, int, int]:
    """A quick test input for a zoo spec: ``side`` × ``side``, or the smallest the network takes."""
    side = max(side, SMALLEST_SIDE.get(spec.stem, 0))
    return (3, side, side)  # networks written by hand: a U-Net, ...


def example_batch(net, batch: int, seed: int = 0) -> np.ndarray:
    """A random batch of the network's input, channels first: normal values, or token ids below
    the vocabulary of the embedding that looks them up."""
    rng = np.random.default_rng(seed)
    if layout_of(net.input_shape) is IDS:
        vocabulary = min(cl.layer.num_embeddings for cl in net.layers if cl.layer.takes_ids)
        return rng.integers(0, vocabulary, (batch, *net.input_shape), dtype=np.int64)
    return rng.standard_normal((batch, *net.input_shape)).astype("float32")


def lines_executed(action: Callable[[], object]) -> int:
    """How many lines of Python ``action`` executes, in any module. Tests of "work stays
    proportional to the document" compare this count, not a clock: it does not depend on how busy
    the machine is, so it cannot flake on a loaded CI runner, and a quadratic loop shows up in it.
    ``action`` runs once untraced first, so one-time work (imports, pydantic's schema building) is
    not counted."""
    action()
    count = 0

    def trace(frame, event, arg):
        nonlocal count
        count += event == "line"
        return trace

    sys.settrace(trace)
    try:
        action()
    finally:
        sys.settrace(None)
    return count


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


def without(packages: tuple[str, ...], body: str) -> str:
    """A script that runs ``body`` as if ``packages`` were not installed: every import finder
    misses them (entry points are still found)."""
    return f"""
import sys


class Hidden:
    def __init__(self, finder):
        self.finder = finder

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {packages!r}:
            return None
        return self.finder.find_spec(name, path, target)

    def __getattr__(self, name):
        return getattr(self.finder, name)


sys.meta_path[:] = [Hidden(finder) for finder in sys.meta_path]
{body}"""
