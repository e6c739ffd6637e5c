"""Dropout, flatten and fully connected layers."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt

from netspec.layers.activations import ActivationName
from netspec.layers.base import (
    TOKENS,
    Analysis,
    Layer,
    LayerInput,
    ShapeIssue,
    TensorShape,
    WeightTensor,
    fmt_shape,
    is_tokens,
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
    """Fully connected layer (PyTorch ``nn.Linear``, Keras ``Dense``) on flat features, or on
    every token of a token sequence (L×D: the same weights at each position).

    out = (out_features,), or (L, out_features) for tokens
    params = in_features · out_features + (out_features if bias)
    MACs   = L · in_features · out_features (L = 1 for flat features)
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
    )

    weights = (WeightTensor("weight", "kernel", to_keras=(1, 0)),  # (out, in) <-> (in, out)
               WeightTensor("bias", "bias", needs="bias"))

    type: Literal["linear"]
    out_features: PositiveInt = Field(description="Number of output features (units).")
    bias: bool = True
    activation: ActivationName | None = Field(None, description="Activation applied to the output.")
    in_features: PositiveInt | None = Field(None, description="Optional; inferred from the previous layer.")

    def analyze(self, inp: LayerInput) -> Analysis:
        tokens = is_tokens(inp.shape)  # applied to every token, as nn.Linear and Dense do on the last axis
        if len(inp.shape) != 1 and not tokens:
            per_position = (" (or, for one linear layer at every position of an L×D input, write the input as "
                            "{shape: [L, D], layout: tokens})") if len(inp.shape) == 2 else ""
            raise ShapeIssue(
                f"linear needs flat features but {inp.producer} yields {fmt_shape(inp.shape)}",
                hint=f"add '- type: flatten' before this layer{per_position}")
        features = inp.shape[-1]
        positions = inp.shape[0] if tokens else 1
        issues = []
        if self.in_features is not None and self.in_features != features:
            what = "features per token" if tokens else "features"
            issues.append(ShapeIssue(
                f"in_features is {self.in_features:,} but {inp.producer} yields {features:,} {what}",
                field="in_features", fatal=False,
                hint=f"set in_features: {features}, or leave it out and netspec infers it"))
        return Analysis(
            output=TensorShape((positions, self.out_features), TOKENS) if tokens else (self.out_features,),
            params=features * self.out_features + (self.out_features if self.bias else 0),
            macs=positions * features * self.out_features,
            resolved={"in_features": features},
            issues=issues,
        )
