"""What `netspec check` prints when its output is not a terminal: the same lines whatever the
terminal's width and however long the path of the checkout or the spec."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from .conftest import SPECS_DIR

LONG = "a/very/long/path/to/the/checkout/netspec/with/more/folders/than/any/terminal/is/wide/specs"


@pytest.mark.parametrize("columns", ["40", "60", "200"])
def test_check_header_and_table_never_wrap_when_piped(tmp_path, columns):
    folder = tmp_path / LONG
    folder.mkdir(parents=True)
    spec = folder / "alexnet-keras.yaml"
    shutil.copy(SPECS_DIR / "alexnet-keras.yaml", spec)
    result = subprocess.run([sys.executable, "-m", "netspec", "check", str(spec)], capture_output=True, text=True,
                            env={**os.environ, "COLUMNS": columns})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"alexnet-keras  {spec}  input 224×224×3  batch 1"
    conv1 = next(line for line in lines if line.split()[:1] == ["conv1"])
    assert conv1.split() == ["conv1", "conv2d+relu", "56×56×96", "34,944", "109.28", "M", "11", "13"]
    assert not any("…" in line for line in lines)


def test_check_output_is_the_same_from_any_folder_and_width(tmp_path):
    spec = SPECS_DIR / "alexnet.yaml"

    def run(columns: str, cwd) -> list[str]:
        result = subprocess.run([sys.executable, "-m", "netspec", "check", str(spec)], capture_output=True,
                                text=True, env={**os.environ, "COLUMNS": columns}, cwd=cwd)
        assert result.returncode == 0, result.stderr
        return [line.rstrip() for line in result.stdout.splitlines()]

    assert run("30", tmp_path) == run("250", SPECS_DIR)


def test_the_base_file_of_inherited_layers_is_named_on_one_line(tmp_path):
    folder = tmp_path / LONG
    folder.mkdir(parents=True)
    for name in ("alexnet.yaml", "alexnet-onetower.yaml"):
        shutil.copy(SPECS_DIR / name, folder / name)
    result = subprocess.run([sys.executable, "-m", "netspec", "check", str(folder / "alexnet-onetower.yaml")],
                            capture_output=True, text=True, env={**os.environ, "COLUMNS": "60"})
    assert result.returncode == 0, result.stderr
    assert f"Ln: lines in {folder / 'alexnet.yaml'}" in result.stdout.splitlines()


def test_a_narrow_terminal_never_cuts_a_figure():
    """On a 60-column terminal rich would shrink the columns to '37,752,…': every figure must stay whole."""
    from rich.console import Console

    from netspec import check_file
    from netspec.analysis.report import render_summary

    console = Console(force_terminal=True, width=60, record=True, color_system=None)
    render_summary(check_file(SPECS_DIR / "alexnet.yaml"), console)
    text = console.export_text()
    assert "…" not in text
    assert "37,752,832" in text and "256×27×27" in text


@pytest.mark.parametrize("width", [70, 80, 200])
def test_the_check_table_fits_a_narrow_terminal_by_leaving_out_columns(width):
    """At COLUMNS=70 in a terminal the tables were 73-86 columns wide; now the least needed
    columns (Ln, RF, then MACs) are left out, and the table says so."""
    import io

    from rich.cells import cell_len
    from rich.console import Console

    from netspec.analysis.checker import check_file
    from netspec.analysis.report import render_summary

    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=width, color_system=None, highlight=False)
    render_summary(check_file(SPECS_DIR / "zoo" / "resnet18.yaml"), console)
    lines = out.getvalue().splitlines()
    assert max(cell_len(line) for line in lines) <= width, "\n".join(lines)
    header = next(line for line in lines if "Layer" in line and "Type" in line)
    assert "Params" in header and "Output" in header
    if width == 200:
        assert header.split()[-1] == "Ln" and not any("left out" in line for line in lines)
    else:
        assert "Ln" not in header.split() and any(f"left out to fit {width} columns" in line for line in lines)
