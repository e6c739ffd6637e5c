"""Dropout, flatten and fully connected layers."""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, PositiveInt, WithJsonSchema

from netspec.layers.activations import ActivationName
from netspec.layers.base import (
    TOKENS,
    Analysis,
    Layer,
    LayerInput,
    ShapeIssue,
    TensorShape,
    WeightTensor,
    features_last,
    fmt_shape,
    layout_of,
    with_layout,
)


class Dropout(Layer):
    """Inverted dropout: zeroes each value with probability p in training and scales the rest by
    1/(1 - p); the identity in evaluation. Shape unchanged; params = 0, MACs = 0."""

    category = "regularization"
    synonyms = {"rate": "p"}
    random_in_training = True

    examples = (((100,), {"p": 0.5}), ((4, 5, 5), {"p": 0.1}))

    type: Literal["dropout"]
    p: float = Field(0.5, ge=0, lt=1, description="Probability of zeroing a value.")

    def analyze(self, inp: LayerInput) -> Analysis:
        return Analysis(output=inp.shape)


class StochasticDepth(Layer):
    """Stochastic depth (Huang et al., 2016), as torchvision's ``StochasticDepth(p, "row")``: in
    training, each example's input is zeroed with probability p and kept ones are scaled by
    1/(1 - p), so a residual branch before the addition is dropped for whole examples; the identity
    in evaluation. Shape unchanged; params = 0, MACs = 0."""

    category = "regularization"
    synonyms = {"rate": "p", "drop_path": "p", "drop_rate": "p"}
    type_synonyms = ("drop_path", "droppath")
    random_in_training = True

    examples = (((4, 5, 5), {"p": 0.1}), (TensorShape((5, 8), TOKENS), {"p": 0.2}), ((12,), {"p": 0.0}))

    type: Literal["stochastic_depth"]
    p: float = Field(ge=0, lt=1, description="Probability of dropping an example's input.")

    def analyze(self, inp: LayerInput) -> Analysis:
        return Analysis(output=inp.shape, resolved={"rank": len(inp.shape)})


class Flatten(Layer):
    """Flattens C×H×W into C·H·W features (PyTorch's order: channel-major). Backends for
    channels-last frameworks reorder so that weights transfer. params = 0, MACs = 0."""

    category = "reshape"
    flattens = True

    examples = (((256, 6, 6), {}), ((3, 4, 5), {}))

    type: Literal["flatten"]

    def analyze(self, inp: LayerInput) -> Analysis:
        size = 1
        for d in inp.shape:
            size *= d
        return Analysis(output=(size,), flattens=True, resolved={"input_shape": inp.shape})


class Linear(Layer):
    """Fully connected layer (PyTorch ``nn.Linear``, Keras ``Dense``) on flat features, or at
    every position of a tensor with its features last: each token of a token sequence (L×D), each
    pixel of a channels-last image (H×W×C, as ConvNeXt's blocks), with the same weights.

    out = (out_features,), (L, out_features) for tokens, (H, W, out_features) channels last
    params = in_features · out_features + (out_features if bias)
    MACs   = positions · in_features · out_features (1 position for flat features)
    """

    category = "linear"
    input_channel_keys = ("in_features",)
    synonyms = {"units": "out_features", "use_bias": "bias", "input_dim": "in_features"}
    type_synonyms = ("dense", "fc", "fully_connected")

    examples = (
        ((9216,), {"out_features": 64, "activation": "relu"}),
        ((20,), {"out_features": 10, "bias": False}),
        ((12,), {"in_features": 12, "out_features": 5, "activation": "softmax"}),
        (TensorShape((7, 12), TOKENS), {"out_features": 5, "activation": "gelu"}),  # every token
        (TensorShape((7, 12), TOKENS), {"out_features": 5, "activation": "softmax"}),  # over each token's features
    )

    weights = (WeightTensor("weight", "kernel", to_keras=(1, 0)),  # (out, in) <-> (in, out)
               WeightTensor("bias", "bias", needs="bias"))

    type: Literal["linear"]
    out_features: PositiveInt = Field(description="Number of output features (units).")
    bias: bool = True
    activation: ActivationName | None = Field(None, description="Activation applied to the output.")
    in_features: PositiveInt | None = Field(None, description="Optional; inferred from the previous layer.")

    def analyze(self, inp: LayerInput) -> Analysis:
        # applied at every position of a token sequence or channels-last grid, as nn.Linear and Dense
        # act on the last axis
        per_position = features_last(inp.shape)
        if len(inp.shape) != 1 and not per_position:
            hint = "add '- type: flatten' before this layer"
            if len(inp.shape) == 2:
                hint += (" (or, for one linear layer at every position of an L×D input, write the input as "
                         "{shape: [L, D], layout: tokens})")
            else:
                hint += f"; or, for one at every position, move the channels last: {{type: permute, dims: " \
                        f"{[0, *range(2, len(inp.shape) + 1), 1]}}}"
            raise ShapeIssue(f"linear needs flat features but {inp.producer} yields {fmt_shape(inp.shape)}", hint=hint)
        features = inp.shape[-1]
        positions = math.prod(inp.shape[:-1])
        issues = []
        if self.in_features is not None and self.in_features != features:
            what = "features at each position" if per_position else "features"
            issues.append(ShapeIssue(
                f"in_features is {self.in_features:,} but {inp.producer} yields {features:,} {what}",
                field="in_features", fatal=False,
                hint=f"set in_features: {features}, or leave it out and netspec infers it"))
        return Analysis(
            output=with_layout((*inp.shape[:-1], self.out_features), layout_of(inp.shape)),
            params=features * self.out_features + (self.out_features if self.bias else 0),
            macs=positions * features * self.out_features,
            resolved={"in_features": features},
            issues=issues,
        )


def _floats(value):
    return tuple(value) if isinstance(value, list) else value


Floats = Annotated[tuple[float, ...], BeforeValidator(_floats),
                   WithJsonSchema({"type": "array", "items": {"type": "number"}, "minItems": 1})]


class ChannelAffine(Layer):
    """A fixed scale and shift per channel, y_c = x_c · scale_c + shift_c, nothing learned: a
    normalization inside the network, as torchvision's Inception-v3 turns ImageNet-normalized
    input into its own with ``transform_input``. Channels first or features last. Shape unchanged;
    params = 0, MACs = the input's numel."""

    category = "normalization"
    synonyms = {"offset": "shift", "bias": "shift", "mul": "scale"}
    type_synonyms = ("scale_shift", "rescaling", "transform_input", "normalize")

    examples = (((3, 4, 5), {"scale": [0.5, 2.0, -1.0], "shift": [0.1, 0.0, -0.3]}),
                (TensorShape((4, 2), TOKENS), {"scale": [3.0, 0.5], "shift": [1.0, 2.0]}))

    type: Literal["channel_affine"]
    scale: Floats = Field(description="One factor per channel.")
    shift: Floats = Field(description="One offset per channel, added after the scale.")

    def analyze(self, inp: LayerInput) -> Analysis:
        channels = inp.shape[-1] if features_last(inp.shape) else inp.shape[0]
        for field, values in (("scale", self.scale), ("shift", self.shift)):
            if len(values) != channels:
                raise ShapeIssue(f"{field} has {len(values)} values and {inp.producer} yields {channels} channels",
                                 field=field, hint=f"give one value per channel ({channels})")
        ones = 0 if features_last(inp.shape) else len(inp.shape) - 1
        return Analysis(output=inp.shape, macs=math.prod(inp.shape), resolved={"ones": ones})
