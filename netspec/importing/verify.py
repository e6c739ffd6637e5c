"""What every import's round trip shares, whatever the framework: the inputs both models run on,
how a probe of the original varies the weights that would hide a layer, and the comparison of
the spec's model with the original."""

from __future__ import annotations

from typing import Any

import numpy as np

from netspec.errors import ModelImportError


def probe_inputs(shape: tuple[int, ...]) -> np.ndarray:
    """Two random inputs of ``shape`` (channels first), the second eight times the first's scale:
    a difference only large values show (a ReLU6 read for a ReLU) shows too."""
    generator = np.random.default_rng(1)
    return np.concatenate([generator.standard_normal((1, *shape)),
                           8 * generator.standard_normal((1, *shape))]).astype("float32")


def varied(array: np.ndarray, generator: np.random.Generator) -> np.ndarray | None:
    """A weight that starts constant (a zero head or bias, a unit scale, a layer scale of 1e-6)
    drawn at random, since as it is it would hide the layers it scales; None for any other."""
    flat = array.reshape(-1)
    if array.dtype.kind != "f" or not flat.size or not np.all(flat == flat[0]):
        return None
    constant = float(flat[0])
    if constant == 0:
        return (0.02 * generator.standard_normal(array.shape)).astype(array.dtype)
    factor = constant if abs(constant) >= 0.1 else 1.0  # about 1, or about the constant where it is large
    return (factor * (0.5 + generator.random(array.shape))).astype(array.dtype)


def compare_outputs(expected: Any, got: Any, what: str, original: str = "the original",
                    relative: float = 1e-4) -> dict[str, Any]:
    """Refuses outputs ``got`` (of ``what``) that differ from ``expected`` by more than
    ``relative`` of their size, and a comparison the input does not decide (a batch of two inputs
    whose outputs hardly differ would show nothing); what it measured."""
    expected, got = np.asarray(expected, dtype=np.float64), np.asarray(got, dtype=np.float64)
    scale = float(np.abs(expected).max()) if expected.size else 0.0
    difference = float(np.abs(expected - got).max()) if expected.shape == got.shape else float("inf")
    # relative to the outputs' size: a softmax over 1,000 classes gives outputs near 1e-3
    tolerance = relative * scale + 1e-12
    if not difference <= tolerance:  # NaN too
        raise ModelImportError.single(
            f"{what} does not reproduce {original}: its outputs differ by up to {difference:.3g} (outputs up to "
            f"{scale:.3g})", hint="please report it: netspec import wrote nothing")
    dependence = float(np.abs(expected - expected.mean(axis=0, keepdims=True)).max())
    if not dependence > 10 * tolerance:
        raise ModelImportError.single(
            f"the round trip cannot tell: {original}'s outputs hardly depend on its input (they differ by "
            f"{dependence:.3g} between two inputs)", hint="--no-verify writes the spec unverified")
    return {"max_difference": difference, "output_scale": scale, "input_dependence": dependence}
