"""Convolution."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt

from netspec.layers.activations import ActivationName
from netspec.layers.base import (
    Analysis,
    Layer,
    LayerInput,
    Padding,
    Pair,
    ShapeIssue,
    WeightTensor,
    Window,
    require_spatial,
    resolve_padding,
    spatial_output,
)


class Conv2d(Layer):
    """2-D convolution (PyTorch ``nn.Conv2d``, Keras ``Conv2D``).

    Output size per spatial dimension:
        out = floor((in + pad_before + pad_after - dilation·(kernel - 1) - 1) / stride) + 1
    with ``padding: same`` following TensorFlow (out = ceil(in / stride), extra pixel bottom/right).

    params = out_channels · (in_channels / groups) · kh · kw + (out_channels if bias)
    MACs   = out_h · out_w · out_channels · (in_channels / groups) · kh · kw
    """

    category = "convolution"
    type_synonyms = ("conv", "conv2D")
    synonyms = {"filters": "out_channels", "strides": "stride", "use_bias": "bias",
                "dilation_rate": "dilation", "kernel": "kernel_size"}

    examples = (
        ((3, 32, 32), {"out_channels": 8, "kernel_size": 3}),
        ((3, 227, 227), {"out_channels": 96, "kernel_size": 11, "stride": 4, "activation": "relu"}),
        ((4, 17, 19), {"out_channels": 6, "kernel_size": [3, 5], "stride": [2, 1], "padding": [1, 2], "groups": 2}),
        ((3, 224, 224), {"out_channels": 16, "kernel_size": 11, "stride": 4, "padding": "same"}),
        ((6, 15, 15), {"out_channels": 4, "kernel_size": 3, "dilation": 2, "bias": False, "padding": "valid"}),
        ((4, 9, 10), {"out_channels": 4, "kernel_size": 4, "stride": 3, "padding": "same", "activation": "tanh"}),
    )

    weights = (WeightTensor("weight", "kernel", to_keras=(2, 3, 1, 0)),  # OIHW <-> HWIO
               WeightTensor("bias", "bias", needs="bias"))

    type: Literal["conv2d"]
    out_channels: PositiveInt = Field(description="Number of filters.")
    kernel_size: Pair = Field(description="Kernel size: an int or [height, width].")
    stride: Pair = (1, 1)
    padding: Padding = Field((0, 0), description="An int, [height, width], 'valid', or TensorFlow-style 'same'.")
    dilation: Pair = (1, 1)
    groups: PositiveInt = Field(1, description="Channel groups (2 for the paper's two GPU towers).")
    bias: bool = True
    activation: ActivationName | None = Field(None, description="Activation applied to the output.")
    in_channels: PositiveInt | None = Field(None, description="Optional; inferred from the previous layer.")

    def analyze(self, inp: LayerInput) -> Analysis:
        c, h, w = require_spatial(inp, "conv2d")
        issues = []
        if self.in_channels is not None and self.in_channels != c:
            issues.append(ShapeIssue(
                f"in_channels is {self.in_channels} but {inp.producer} yields {c} channels",
                field="in_channels", fatal=False,
                hint=f"set in_channels: {c}, or leave it out and netspec infers it"))
        for what, count in (("in_channels", c), ("out_channels", self.out_channels)):
            if count % self.groups:
                divisors = [d for d in range(1, self.groups * 2 + 1)
                            if c % d == 0 and self.out_channels % d == 0]
                issues.append(ShapeIssue(
                    f"groups={self.groups} does not divide {what}={count}",
                    field="groups", fatal=False,
                    hint=f"groups must divide both {c} input and {self.out_channels} output channels, "
                         f"e.g. {', '.join(map(str, divisors[-4:]))}"))
                break
        pads = resolve_padding(self.padding, (h, w), self.kernel_size, self.stride, self.dilation)
        out_h, out_w = spatial_output(inp, (h, w), self.kernel_size, self.stride, pads, self.dilation)
        kh, kw = self.kernel_size
        per_output = (c // self.groups) * kh * kw
        weights = self.out_channels * per_output + (self.out_channels if self.bias else 0)
        return Analysis(
            output=(self.out_channels, out_h, out_w),
            params=weights,
            macs=out_h * out_w * self.out_channels * per_output,
            window=Window(self.kernel_size, self.stride, self.dilation),
            resolved={"in_channels": c, "padding": pads},
            issues=issues,
        )
