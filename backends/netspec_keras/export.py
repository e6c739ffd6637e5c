"""Writing a spec's Keras model to disk: source, a .keras archive (reloads in safe mode), or Keras
weights (.weights.h5). Files are written to a temporary name and renamed into place."""

from __future__ import annotations

from pathlib import Path

from netspec.backend import Artifact, output_paths
from netspec.check import CheckedNet
from netspec.fileio import atomic_path, atomic_write_text

SUFFIXES = {"source": ".py", "keras": ".keras", "weights": ".weights.h5"}


def export(backend, net: CheckedNet, out_dir: Path, formats: list[str], *, weights=None,
           force: bool = False) -> list[Artifact]:
    paths = output_paths(net, out_dir, formats, SUFFIXES, "keras", force=force)
    source = backend.emit(net)
    model = backend.load(net, source, weights=weights)
    written = []
    for fmt, path in paths.items():
        if fmt == "source":
            atomic_write_text(path, source)
        else:
            with atomic_path(path) as tmp:
                # Keras insists on the file name's ending (".weights.h5", ".keras")
                target = tmp + SUFFIXES[fmt]
                (model.save if fmt == "keras" else model.save_weights)(target)
                Path(target).replace(tmp)
        written.append(Artifact(path, fmt))
    return written
