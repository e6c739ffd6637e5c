"""The package and both backends type-check: mypy, with pyproject.toml's [tool.mypy] settings, finds nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ["netspec", "backends/netspec_torch", "backends/netspec_keras"]


@pytest.mark.slow
def test_mypy_finds_no_errors():
    pytest.importorskip("mypy")
    result = subprocess.run([sys.executable, "-m", "mypy", *TARGETS], cwd=ROOT, capture_output=True, text=True,
                            timeout=1800)
    assert result.returncode == 0, f"mypy failed (exit code {result.returncode}):\n{result.stdout}{result.stderr}"
