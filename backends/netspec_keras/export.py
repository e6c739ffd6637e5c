"""Writing a spec's Keras model to disk: source, a .keras archive (reloads in safe mode), Keras
weights (.weights.h5), or a TensorFlow SavedModel folder. Everything is written under a temporary
name and renamed into place."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from netspec.backend import Artifact, output_paths
from netspec.check import CheckedNet
from netspec.errors import SpecError
from netspec.fileio import atomic_path, atomic_write_text

SUFFIXES = {"source": ".py", "keras": ".keras", "weights": ".weights.h5", "savedmodel": "_savedmodel"}


def export(backend, net: CheckedNet, out_dir: Path, formats: list[str], *, weights=None,
           force: bool = False) -> list[Artifact]:
    paths = output_paths(net, out_dir, formats, SUFFIXES, "keras", force=force)
    source = backend.emit(net)
    model = backend.load(net, source, weights=weights)
    written = []
    for fmt, path in paths.items():
        if fmt == "source":
            atomic_write_text(path, source)
        elif fmt == "savedmodel":
            _export_savedmodel(model, path)
        else:
            with atomic_path(path) as tmp:
                # Keras insists on the file name's ending (".weights.h5", ".keras")
                target = tmp + SUFFIXES[fmt]
                (model.save if fmt == "keras" else model.save_weights)(target)
                Path(target).replace(tmp)
        written.append(Artifact(path, fmt))
    return written


def _export_savedmodel(model, path: Path) -> None:
    """A TensorFlow SavedModel folder (serving endpoint ``serve``), built beside the target and
    renamed into place. Needs Keras on TensorFlow."""
    import keras

    if keras.config.backend() != "tensorflow":
        raise SpecError.single("the savedmodel format needs Keras on TensorFlow",
                               hint=f"Keras runs on {keras.config.backend()} here; set KERAS_BACKEND=tensorflow")
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        model.export(str(staging / "model"), format="tf_saved_model", verbose=False)
        if path.exists():
            shutil.rmtree(path)
        (staging / "model").rename(path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
