"""Writing a spec's Keras model to disk: source, a .keras archive (reloads in safe mode), or Keras
weights (.weights.h5). Files are written to a temporary name and renamed into place."""

from __future__ import annotations

from pathlib import Path

from netspec.backend import Artifact
from netspec.check import CheckedNet
from netspec.errors import SpecError
from netspec.fileio import atomic_path, atomic_write_text
from netspec.render import module_name

SUFFIXES = {"source": ".py", "keras": ".keras", "weights": ".weights.h5"}


def export(backend, net: CheckedNet, out_dir: Path, formats: list[str], *, weights=None,
           force: bool = False) -> list[Artifact]:
    unknown = [f for f in formats if f not in SUFFIXES]
    if unknown:
        raise SpecError.single(f"unknown export format {unknown[0]!r} for the keras backend",
                               hint=f"choose from: {', '.join(SUFFIXES)}")
    stem = module_name(net.spec.name)
    paths = {fmt: out_dir / f"{stem}{SUFFIXES[fmt]}" for fmt in dict.fromkeys(formats)}
    existing = [str(p) for p in paths.values() if p.exists()]
    if existing and not force:
        raise SpecError.single(f"refusing to overwrite {', '.join(existing)}", hint="pass --force to replace")
    out_dir.mkdir(parents=True, exist_ok=True)
    source = backend.emit(net)
    model = backend.load(net, source, weights=weights)
    written = []
    for fmt, path in paths.items():
        if fmt == "source":
            atomic_write_text(path, source)
        else:
            # Keras checks the file name's ending, so the temporary name keeps the full suffix
            with atomic_path(path.with_name(path.name.replace(SUFFIXES[fmt], "") + SUFFIXES[fmt])) as tmp:
                target = tmp if tmp.endswith(SUFFIXES[fmt]) else tmp + SUFFIXES[fmt]
                (model.save if fmt == "keras" else model.save_weights)(target)
                if target != tmp:
                    Path(target).replace(tmp)
        written.append(Artifact(path, fmt))
    return written
