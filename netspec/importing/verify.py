"""The comparison every import's round trip ends with, whatever the framework: the spec's model
against the original on the same inputs."""

from __future__ import annotations

from typing import Any

import numpy as np

from netspec.errors import ModelImportError


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
