"""Convolution, written once for any number of spatial axes (as Keras' ``BaseConv(rank)``):
``conv1d`` over sequences (C×L), ``conv2d`` over images (C×H×W)."""

from __future__ import annotations

from math import prod
from typing import Any, ClassVar, Literal

from pydantic import Field, PositiveInt

from netspec.layers.activations import ActivationName
from netspec.layers.base import (
    AXES,
    Analysis,
    Layer,
    LayerInput,
    Length,
    LengthPadding,
    NonNegativePair,
    Padding,
    Pair,
    ShapeIssue,
    Triple,
    TriplePadding,
    WeightTensor,
    Window,
    require_spatial,
    resolve_padding,
    spatial_output,
)


def conv_weights(rank: int) -> tuple[WeightTensor, ...]:
    """A convolution's kernel (PyTorch O·I·spatial, Keras spatial·I·O) and bias."""
    return (WeightTensor("weight", "kernel", to_keras=(*range(2, rank + 2), 1, 0)),
            WeightTensor("bias", "bias", needs="bias"))


def depthwise_weights(rank: int) -> tuple[WeightTensor, ...]:
    """A depthwise convolution's kernel (PyTorch C·1·spatial, Keras' DepthwiseConv spatial·C·1) and bias."""
    return (WeightTensor("weight", "depthwise_kernel", to_keras=(*range(2, rank + 2), 0, 1)),
            WeightTensor("bias", "bias", needs="bias"))


def _per_axis(rank: int) -> str:
    return "an int" if rank == 1 else f"an int or [{', '.join(AXES[rank])}]"


class _ConvNd(Layer):
    """What a convolution of any rank shares: its fields, shape rule, parameters and MACs. A
    concrete class sets ``rank`` and declares its per-axis fields with that rank's types."""

    rank: ClassVar[int]
    category = "convolution"
    input_channel_keys = ("in_channels",)
    synonyms = {"filters": "out_channels", "strides": "stride", "use_bias": "bias",
                "dilation_rate": "dilation", "kernel": "kernel_size"}

    type: str  # each concrete class's Literal; declared here to keep the fields in this order
    out_channels: PositiveInt = Field(description="Number of filters.")
    kernel_size: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...] | str
    dilation: tuple[int, ...]
    groups: PositiveInt = Field(1, description="Channel groups (2 for the paper's two GPU towers).")
    bias: bool = True
    activation: ActivationName | None = Field(None, description="Activation applied to the output.")
    in_channels: PositiveInt | None = Field(None, description="Optional; inferred from the previous layer.")

    def depthwise(self, in_channels: int) -> bool:
        """One filter per channel (groups = in = out channels, as MobileNet's), which Keras has a
        layer of its own for, in 1-D and 2-D (a 3-D one stays a grouped Conv3D)."""
        return self.rank < 3 and 1 < self.groups == in_channels == self.out_channels

    def weight_tensors(self, resolved: dict[str, Any] | None = None) -> tuple[WeightTensor, ...]:
        if resolved is None or not self.depthwise(resolved["in_channels"]):
            return super().weight_tensors(resolved)
        return tuple(w for w in depthwise_weights(self.rank) if w.needs is None or getattr(self, w.needs))

    def analyze(self, inp: LayerInput) -> Analysis:
        c, spatial = require_spatial(inp, self.kind, self.rank)
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
        pads = resolve_padding(self.padding, spatial, self.kernel_size, self.stride, self.dilation)
        out = spatial_output(inp, spatial, self.kernel_size, self.stride, pads, self.dilation)
        per_output = (c // self.groups) * prod(self.kernel_size)
        weights = self.out_channels * per_output + (self.out_channels if self.bias else 0)
        return Analysis(
            output=(self.out_channels, *out),
            params=weights,
            macs=prod(out) * self.out_channels * per_output,
            window=Window(self.kernel_size, self.stride, self.dilation),
            resolved={"in_channels": c, "padding": pads},
            issues=issues,
        )


class Conv1d(_ConvNd):
    """1-D convolution over a sequence (PyTorch ``nn.Conv1d``, Keras ``Conv1D``), C×L -> C'×L'.

        L' = floor((L + pad_before + pad_after - dilation·(kernel - 1) - 1) / stride) + 1
    with ``padding: same`` following TensorFlow (L' = ceil(L / stride), the extra step after).

    params = out_channels · (in_channels / groups) · kernel + (out_channels if bias)
    MACs   = L' · out_channels · (in_channels / groups) · kernel
    """

    rank = 1
    type_synonyms = ("conv1D",)
    weights = conv_weights(1)

    examples = (
        ((4, 32), {"out_channels": 8, "kernel_size": 3}),
        ((3, 50), {"out_channels": 6, "kernel_size": 5, "stride": 2, "padding": 2, "activation": "relu"}),
        ((4, 19), {"out_channels": 6, "kernel_size": 3, "stride": 2, "padding": "same", "groups": 2}),
        ((6, 21), {"out_channels": 4, "kernel_size": 3, "dilation": 2, "bias": False}),
        ((4, 10), {"out_channels": 4, "kernel_size": 4, "padding": "same", "activation": "tanh"}),  # pads 1 | 2
        ((6, 20), {"out_channels": 6, "kernel_size": 5, "stride": 2, "padding": "same", "groups": 6}),  # depthwise
    )

    type: Literal["conv1d"]
    kernel_size: Length = Field(description="Kernel length.")
    stride: Length = (1,)
    padding: LengthPadding = Field((0,), description="An int, 'valid', or TensorFlow-style 'same'.")
    dilation: Length = (1,)


class Conv2d(_ConvNd):
    """2-D convolution (PyTorch ``nn.Conv2d``, Keras ``Conv2D``).

    Output size per spatial dimension:
        out = floor((in + pad_before + pad_after - dilation·(kernel - 1) - 1) / stride) + 1
    with ``padding: same`` following TensorFlow (out = ceil(in / stride), extra pixel bottom/right).

    params = out_channels · (in_channels / groups) · kh · kw + (out_channels if bias)
    MACs   = out_h · out_w · out_channels · (in_channels / groups) · kh · kw
    """

    rank = 2
    type_synonyms = ("conv", "conv2D")
    weights = conv_weights(2)  # OIHW <-> HWIO

    examples = (
        ((3, 32, 32), {"out_channels": 8, "kernel_size": 3}),
        ((3, 227, 227), {"out_channels": 96, "kernel_size": 11, "stride": 4, "activation": "relu"}),
        ((4, 17, 19), {"out_channels": 6, "kernel_size": [3, 5], "stride": [2, 1], "padding": [1, 2], "groups": 2}),
        ((3, 224, 224), {"out_channels": 16, "kernel_size": 11, "stride": 4, "padding": "same"}),
        ((6, 15, 15), {"out_channels": 4, "kernel_size": 3, "dilation": 2, "bias": False, "padding": "valid"}),
        ((4, 9, 10), {"out_channels": 4, "kernel_size": 4, "stride": 3, "padding": "same", "activation": "tanh"}),
        ((8, 9, 9), {"out_channels": 8, "kernel_size": 3, "padding": 1, "groups": 8, "bias": False}),  # depthwise
    )

    type: Literal["conv2d"]
    kernel_size: Pair = Field(description=f"Kernel size: {_per_axis(2)}.")
    stride: Pair = (1, 1)
    padding: Padding = Field((0, 0), description="An int, [height, width], 'valid', or TensorFlow-style "
                                      "'same'.")
    dilation: Pair = (1, 1)


class Conv3d(_ConvNd):
    """3-D convolution over a volume (PyTorch ``nn.Conv3d``, Keras ``Conv3D``), C×D×H×W ->
    C'×D'×H'×W', each axis as conv2d's.

    params = out_channels · (in_channels / groups) · kd · kh · kw + (out_channels if bias)
    MACs   = D' · H' · W' · out_channels · (in_channels / groups) · kd · kh · kw
    """

    rank = 3
    type_synonyms = ("conv3D",)
    weights = conv_weights(3)  # OIDHW <-> DHWIO

    examples = (
        ((3, 8, 10, 10), {"out_channels": 4, "kernel_size": 3}),
        ((4, 9, 11, 7), {"out_channels": 6, "kernel_size": [3, 3, 1], "stride": [1, 2, 1], "padding": [1, 1, 0],
                         "groups": 2, "activation": "relu"}),
        ((2, 7, 8, 9), {"out_channels": 3, "kernel_size": 3, "stride": 2, "padding": "same", "bias": False}),
    )

    type: Literal["conv3d"]
    kernel_size: Triple = Field(description=f"Kernel size: {_per_axis(3)}.")
    stride: Triple = (1, 1, 1)
    padding: TriplePadding = Field((0, 0, 0), description="An int, [depth, height, width], 'valid', or "
                                                      "TensorFlow-style 'same'.")
    dilation: Triple = (1, 1, 1)


class ConvTranspose2d(Layer):
    """2-D transposed convolution (PyTorch ``nn.ConvTranspose2d``, Keras ``Conv2DTranspose``): the
    gradient of a convolution, which a decoder uses to upsample (U-Net's 2×2 stride-2 "up-conv").

        out = (in - 1)·stride - 2·padding + kernel + output_padding

    params = in_channels · out_channels · kh · kw + (out_channels if bias)
    MACs   = in_h · in_w · in_channels · out_channels · kh · kw (each input pixel spreads its kernel)

    PyTorch keeps the kernel as (in, out, kh, kw), Keras as (kh, kw, out, in). Keras pads as
    PyTorch does where the padding is 0 (with any output_padding) or, with no output_padding,
    (kernel - stride) / 2 ('same').
    """

    category = "convolution"
    input_channel_keys = ("in_channels",)
    synonyms = {"filters": "out_channels", "strides": "stride", "use_bias": "bias", "kernel": "kernel_size"}
    type_synonyms = ("deconv", "deconv2d", "conv2d_transpose", "conv2DTranspose", "upconv")

    examples = (
        ((4, 5, 6), {"out_channels": 3, "kernel_size": 2, "stride": 2}),
        ((3, 4, 4), {"out_channels": 5, "kernel_size": 4, "stride": 2, "padding": 1}),
        ((2, 3, 5), {"out_channels": 2, "kernel_size": [3, 1], "bias": False}),
        ((3, 4, 5), {"out_channels": 2, "kernel_size": 3, "stride": 2, "padding": 1, "output_padding": 1}),
        ((2, 3, 4), {"out_channels": 3, "kernel_size": 3, "stride": [2, 3], "output_padding": [1, 2]}),
    )
    weights = (WeightTensor("weight", "kernel", to_keras=(2, 3, 1, 0)), WeightTensor("bias", "bias", needs="bias"))

    type: Literal["conv_transpose2d"]
    out_channels: PositiveInt = Field(description="Number of filters.")
    kernel_size: Pair = Field(description=f"Kernel size: {_per_axis(2)}.")
    stride: Pair = (1, 1)
    padding: NonNegativePair = Field((0, 0), description="Rows and columns cropped from each side of the output.")
    output_padding: NonNegativePair = Field((0, 0), description="Rows and columns added after the last; less than "
                                            "the stride (to pick one of the sizes a strided conv maps back from).")
    bias: bool = True

    def analyze(self, inp: LayerInput) -> Analysis:
        channels, spatial = require_spatial(inp, self.kind, 2)
        for extra, stride in zip(self.output_padding, self.stride, strict=True):
            if extra >= stride:
                raise ShapeIssue(f"output_padding {list(self.output_padding)} must be less than the stride "
                                 f"{list(self.stride)}", field="output_padding", hint="use 0, or a larger stride")
        out = tuple((size - 1) * stride - 2 * pad + kernel + extra for size, stride, pad, kernel, extra
                    in zip(spatial, self.stride, self.padding, self.kernel_size, self.output_padding, strict=True))
        if min(out) < 1:
            raise ShapeIssue(f"padding {list(self.padding)} crops the {'×'.join(map(str, spatial))} input's "
                             f"output to {'×'.join(map(str, out))}", field="padding", hint="use less padding")
        per_input = self.out_channels * prod(self.kernel_size)
        # an output pixel reads ceil(kernel / stride) input pixels per axis, and outputs are 1 / stride apart
        reads = tuple(-(-kernel // stride) for kernel, stride in zip(self.kernel_size, self.stride, strict=True))
        return Analysis(output=(self.out_channels, *out), window=Window(reads, (1, 1), upsample=self.stride),
                        params=channels * per_input + (self.out_channels if self.bias else 0),
                        macs=prod(spatial) * channels * per_input, resolved={"in_channels": channels})
