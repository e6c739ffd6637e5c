"""The README's export and convert commands, run top to bottom in a fresh folder as a reader would:
each must succeed, and each file a command's comment names must be there afterwards."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys

import pytest

from .conftest import ROOT

SECTIONS = ("## PyTorch: generated source, live model, exports", "## Keras, and the same outputs in both frameworks")
PATH_IN_COMMENT = re.compile(r"\b(?:out|conv|back)/[\w.\-]+")


def readme_commands() -> list[tuple[str, list[str]]]:
    """(command line, paths its comment promises) of the export/convert sections, in order."""
    text = (ROOT / "README.md").read_text()
    start = text.index(SECTIONS[0])
    end = text.index("\n## ", text.index(SECTIONS[1]) + 1)
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text[start:end], flags=re.S):
        for line in block.splitlines():
            code, _, comment = line.partition("  #")
            if line.startswith(("netspec export", "netspec convert", "python -c")):
                commands.append((code.strip(), PATH_IN_COMMENT.findall(comment)))
    return commands


def test_the_readme_documents_the_sequence():
    commands = [line for line, _ in readme_commands()]
    assert len(commands) == 9
    assert sum(line.startswith("netspec convert") for line in commands) == 2


@pytest.mark.slow
@pytest.mark.torch
@pytest.mark.keras
def test_the_readmes_export_and_convert_commands_run_in_order(tmp_path):
    pytest.importorskip("keras")
    pytest.importorskip("onnxscript")
    (tmp_path / "specs").symlink_to(ROOT / "specs")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "backends")])}
    for line, promised in readme_commands():
        words = shlex.split(line)
        argv = [sys.executable, "-m", "netspec", *words[1:]] if words[0] == "netspec" else [sys.executable,
                                                                                            *words[1:]]
        result = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, env=env, timeout=600)
        assert result.returncode == 0, f"{line}\n{result.stderr[-3000:]}"
        for path in promised:
            assert (tmp_path / path).exists(), f"{line}: {path} was not written"
            if words[0] == "netspec":
                assert str(tmp_path / path) in {str(tmp_path / w.split(" ")[1]) for w in result.stdout.splitlines()}
