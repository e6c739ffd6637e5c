"""Activations. Each keeps its input's shape and has no parameters.

Most are also the values of the ``activation:`` shorthand that convolution and
fully connected layers accept (``activation: relu6``): defining one here makes it available there.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from netspec.layers.base import TOKENS, Analysis, Layer, LayerInput, Shape, TensorShape, features_last


class _Elementwise(Layer):
    category = "activation"
    # Whether `activation: <type>` on a convolution or linear layer may name it (with its defaults).
    shorthand: ClassVar[bool] = True

    @classmethod
    def resolved_for(cls, shape: Shape) -> dict[str, Any]:
        """What the backends need to apply it to a tensor of ``shape`` (the shorthand's too)."""
        return {}

    def analyze(self, inp: LayerInput) -> Analysis:
        return Analysis(output=inp.shape, resolved=self.resolved_for(inp.shape))


class ReLU(_Elementwise):
    """max(x, 0). Shape unchanged; params = 0, MACs = 0."""

    examples = (((4, 5, 5), {}), ((10,), {}))

    type: Literal["relu"]


class ReLU6(_Elementwise):
    """min(max(x, 0), 6), MobileNet's activation. Shape unchanged; params = 0, MACs = 0."""

    examples = (((4, 5, 5), {}), ((10,), {}))

    type: Literal["relu6"]


class LeakyReLU(_Elementwise):
    """x if x > 0 else negative_slope·x. Shape unchanged; params = 0, MACs = 0."""

    synonyms = {"alpha": "negative_slope"}
    shorthand = False  # Keras' "leaky_relu" string means a slope of 0.2, PyTorch's default is 0.01

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

    type_synonyms = ("swish",)

    examples = (((4, 5, 5), {}), ((10,), {}))

    type: Literal["silu"]


class Hardswish(_Elementwise):
    """x·min(max(x + 3, 0), 6) / 6, MobileNetV3's cheap swish (Keras calls it hard_silu).
    Shape unchanged; params = 0, MACs = 0."""

    examples = (((4, 5, 5), {}), ((10,), {}))

    type: Literal["hardswish"]


class Hardsigmoid(_Elementwise):
    """min(max(x + 3, 0), 6) / 6, the gate of MobileNetV3's squeeze-and-excitation (PyTorch's
    definition, which Keras 3's hard_sigmoid shares). Shape unchanged; params = 0, MACs = 0."""

    examples = (((4, 5, 5), {}), ((10,), {}))

    type: Literal["hardsigmoid"]


class Sigmoid(_Elementwise):
    """1 / (1 + exp(-x)). Shape unchanged; params = 0, MACs = 0."""

    examples = (((4, 5, 5), {}), ((10,), {}))

    type: Literal["sigmoid"]


class Tanh(_Elementwise):
    """tanh(x). Shape unchanged; params = 0, MACs = 0."""

    examples = (((4, 5, 5), {}), ((10,), {}))

    type: Literal["tanh"]


class Softmax(_Elementwise):
    """exp(x_c) / Σ exp(x_j) over the channel (or feature) axis: the first axis channels first,
    the last for tokens and channels-last tensors. Shape unchanged; params = 0."""

    outputs_probabilities = True

    examples = (((10,), {}), ((4, 3, 3), {}), (TensorShape((5, 6), TOKENS), {}))

    type: Literal["softmax"]

    @classmethod
    def resolved_for(cls, shape: Shape) -> dict[str, Any]:
        return {"dim": -1 if features_last(shape) else 1}  # PyTorch's axis, the batch counted


class Identity(_Elementwise):
    """Passes its input through unchanged: a named point in the graph (a residual's shortcut, a
    placeholder a variant can replace). Shape unchanged; params = 0, MACs = 0."""

    category = "structure"
    shorthand = False

    examples = (((4, 5, 5), {}), ((10,), {}))

    type: Literal["identity"]


# The values of the `activation:` shorthand.
SHORTHAND_ACTIVATIONS = tuple(cls.model_fields["type"].annotation.__args__[0]  # type: ignore[union-attr]
                              for cls in _Elementwise.__subclasses__() if cls.shorthand)
ActivationName = Literal[SHORTHAND_ACTIVATIONS]  # type: ignore[valid-type]
