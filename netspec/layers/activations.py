"""Activations. Each keeps its input's shape and has no parameters."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from netspec.layers.base import Analysis, Layer, LayerInput


class _Elementwise(Layer):
    category = "activation"

    def analyze(self, inp: LayerInput) -> Analysis:
        return Analysis(output=inp.shape)


class ReLU(_Elementwise):
    """max(x, 0). Shape unchanged; params = 0, MACs = 0."""

    examples = (((4, 5, 5), {}), ((10,), {}))

    type: Literal["relu"]


class LeakyReLU(_Elementwise):
    """x if x > 0 else negative_slope·x. Shape unchanged; params = 0, MACs = 0."""

    synonyms = {"alpha": "negative_slope"}

    examples = (((4, 5, 5), {"negative_slope": 0.2}),)

    type: Literal["leaky_relu"]
    negative_slope: float = Field(0.01, ge=0)


class ELU(_Elementwise):
    """x if x > 0 else alpha·(exp(x) - 1). Shape unchanged; params = 0, MACs = 0."""

    examples = (((10,), {"alpha": 0.5}),)

    type: Literal["elu"]
    alpha: float = Field(1.0, gt=0)


class GELU(_Elementwise):
    """x·Φ(x), the exact (erf) form. Shape unchanged; params = 0, MACs = 0."""

    examples = (((4, 5, 5), {}), ((10,), {}))

    type: Literal["gelu"]


class SiLU(_Elementwise):
    """x·sigmoid(x) (swish). Shape unchanged; params = 0, MACs = 0."""

    examples = (((4, 5, 5), {}), ((10,), {}))

    type: Literal["silu"]


class Sigmoid(_Elementwise):
    """1 / (1 + exp(-x)). Shape unchanged; params = 0, MACs = 0."""

    examples = (((4, 5, 5), {}), ((10,), {}))

    type: Literal["sigmoid"]


class Tanh(_Elementwise):
    """tanh(x). Shape unchanged; params = 0, MACs = 0."""

    examples = (((4, 5, 5), {}), ((10,), {}))

    type: Literal["tanh"]


class Softmax(_Elementwise):
    """exp(x_c) / Σ exp(x_j) over the channel (or feature) axis. Shape unchanged; params = 0."""

    examples = (((10,), {}), ((4, 3, 3), {}))

    type: Literal["softmax"]
