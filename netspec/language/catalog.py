"""The specs that ship inside the package, reachable by name as timm's models are.

``netspec check resnet50`` and ``netspec.create_model("resnet50")`` find ``specs/zoo/resnet50.yaml``
in an installed wheel as in a checkout (``netspec/specs`` is the project's ``specs/`` folder: a link
in the source tree, its copy in a wheel). Anything that names an existing file, or looks like a
path, is a path, so a spec of the user's always wins over a packaged one of the same name.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path

from netspec.errors import SpecError, did_you_mean, listing

SPECS_ROOT = Path(__file__).resolve().parent.parent / "specs"
_SPEC_SUFFIXES = (".yaml", ".yml")


def packaged_specs() -> dict[str, Path]:
    """Every packaged spec by name (its file name without ``.yaml``), in name order."""
    if not SPECS_ROOT.is_dir():
        return {}
    found = {path.stem: path for path in SPECS_ROOT.rglob("*.yaml") if path.is_file()}
    return dict(sorted(found.items()))


def list_models(pattern: str = "*") -> list[str]:
    """The names of the packaged specs that match ``pattern`` (shell-style: ``"resnet*"``), sorted."""
    return [name for name in packaged_specs() if fnmatch.fnmatchcase(name, pattern)]


def looks_like_a_path(ref: str) -> bool:
    return ref.endswith(_SPEC_SUFFIXES) or "/" in ref or "\\" in ref or ref.startswith(".")


def spec_path(ref: str | Path) -> Path:
    """The file ``ref`` names: itself when it is a path or an existing file, else the packaged spec
    of that name. A name that is neither gets one error with the closest names."""
    path = Path(ref)
    text = str(ref)
    try:
        exists = path.exists()
    except (OSError, ValueError):  # a name too long for the file system, a NUL byte: the loader says so
        return path
    if exists or looks_like_a_path(text):
        return path
    models = packaged_specs()
    if text in models:
        return models[text]
    close = did_you_mean(text, models)
    hint = f"{close} (`netspec list` shows every packaged spec)" if close else \
        f"packaged specs: {listing(models)}; or give the path of a .yaml file"
    raise SpecError.single(f"no spec file or packaged spec named {text!r}", hint=hint)
