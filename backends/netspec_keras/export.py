"""Writing a spec's Keras model to disk: source, a .keras archive (reloads in safe mode), Keras
weights (.weights.h5), or a TensorFlow SavedModel folder. All the outputs of one export are
written under temporary names and renamed into place together once every one has been written
(netspec.files.outputs). Source alone never builds the model (nor imports Keras); the other formats
first check that the machine has the memory the model needs."""

from __future__ import annotations

from pathlib import Path

from netspec.analysis.checker import CheckedNet
from netspec.codegen.backend import Artifact, model_for_export, output_paths
from netspec.errors import SetupError
from netspec.files.outputs import Outputs

SUFFIXES = {"source": ".py", "keras": ".keras", "weights": ".weights.h5", "savedmodel": ".savedmodel"}
# copies of the weights each format holds in memory while it is written, beside the model itself
MEMORY_COPIES = {"keras": 2, "weights": 1, "savedmodel": 2}


def export(backend, net: CheckedNet, out_dir: Path, formats: list[str], *, weights=None,
           force: bool = False) -> list[Artifact]:
    with Outputs(force=force) as out:
        paths = output_paths(net, out, out_dir, formats, SUFFIXES, "keras")
        source = backend.emit(net)
        model = model_for_export(backend, net, source, paths, weights=weights, memory_copies=MEMORY_COPIES,
                                 weight_formats="weights (or keras, savedmodel)")
        for fmt, path in paths.items():
            if fmt == "source":
                Path(out.file(path)).write_text(source, encoding="utf-8")
            elif fmt == "savedmodel":
                _export_savedmodel(model, out.tree(path))
            else:
                # Keras insists on the file name's ending (".weights.h5", ".keras"), which the temporary keeps
                tmp = out.file(path)
                (model.save if fmt == "keras" else model.save_weights)(tmp)
    return [Artifact(path, fmt) for fmt, path in paths.items()]


def _export_savedmodel(model, path: Path) -> None:
    """A TensorFlow SavedModel folder (serving endpoint ``serve``). Needs Keras on TensorFlow."""
    import keras

    if keras.config.backend() != "tensorflow":
        raise SetupError.single("the savedmodel format needs Keras on TensorFlow",
                                hint=f"Keras runs on {keras.config.backend()} here; set KERAS_BACKEND=tensorflow")
    model.export(str(path), format="tf_saved_model", verbose=False)
