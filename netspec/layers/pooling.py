"""Pooling."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field

from netspec.layers.base import (
    Analysis,
    Layer,
    LayerInput,
    Padding,
    Pair,
    ShapeIssue,
    Window,
    require_spatial,
    resolve_padding,
    spatial_output,
)


class _WindowPool(Layer):
    category = "pooling"
    synonyms = {"pool_size": "kernel_size", "strides": "stride"}

    kernel_size: Pair = Field(description="Window size: an int or [height, width].")
    stride: Pair | None = Field(None, description="Defaults to the kernel size, as in PyTorch and Keras.")
    padding: Padding = Field((0, 0), description="An int, [height, width], 'valid', or TensorFlow-style 'same'.")
    ceil_mode: bool = Field(False, description="Round the output size up (PyTorch's ceil_mode).")

    def _analyze(self, inp: LayerInput, what: str) -> Analysis:
        c, h, w = require_spatial(inp, what)
        stride = self.stride or self.kernel_size
        if isinstance(self.padding, tuple):
            for pad, k, axis in zip(self.padding, self.kernel_size, ("height", "width"), strict=True):
                if pad > k // 2:
                    raise ShapeIssue(
                        f"padding {pad} is more than half the kernel {k} along the {axis}",
                        field="padding", hint=f"use padding of at most {k // 2} (PyTorch refuses more)")
        if what == "avgpool2d" and self.padding == "same":
            raise ShapeIssue("avgpool2d does not take padding 'same': TensorFlow leaves the padding out of "
                             "each average and PyTorch cannot, so the frameworks would disagree",
                             field="padding", hint="use explicit padding with count_include_pad: false")
        if self.ceil_mode and self.padding == "same":
            raise ShapeIssue("ceil_mode has no effect with padding 'same'", field="ceil_mode",
                             hint="drop ceil_mode or use explicit padding")
        pads = resolve_padding(self.padding, (h, w), self.kernel_size, stride)
        out_h, out_w = spatial_output(inp, (h, w), self.kernel_size, stride, pads, ceil_mode=self.ceil_mode)
        return Analysis(output=(c, out_h, out_w), window=Window(self.kernel_size, stride),
                        resolved={"stride": stride, "padding": pads})


class MaxPool2d(_WindowPool):
    """Max pooling (PyTorch ``nn.MaxPool2d``, Keras ``MaxPooling2D``); padding counts as -inf.

    out = floor((in + pad_before + pad_after - kernel) / stride) + 1  (ceil with ``ceil_mode``)
    params = 0, MACs = 0 (comparisons are not multiply-accumulates)
    """

    type_synonyms = ("maxpool", "max_pool2d", "maxpooling2d")

    examples = (
        ((8, 55, 55), {"kernel_size": 3, "stride": 2}),
        ((4, 16, 16), {"kernel_size": 2}),
        ((4, 14, 14), {"kernel_size": 3, "stride": 2, "ceil_mode": True}),
        ((4, 13, 11), {"kernel_size": 3, "stride": 2, "padding": 1}),
        ((4, 13, 13), {"kernel_size": 3, "stride": 2, "padding": "same"}),
    )

    pad_value = float("-inf")

    type: Literal["maxpool2d"]

    def analyze(self, inp: LayerInput) -> Analysis:
        return self._analyze(inp, "maxpool2d")


class AvgPool2d(_WindowPool):
    """Average pooling (PyTorch ``nn.AvgPool2d``, Keras ``AveragePooling2D``).

    out = floor((in + pad_before + pad_after - kernel) / stride) + 1  (ceil with ``ceil_mode``)
    params = 0, MACs = 0
    """

    type_synonyms = ("avgpool", "averagepooling2d")

    examples = (
        ((8, 12, 12), {"kernel_size": 2}),
        ((4, 14, 14), {"kernel_size": 3, "stride": 2, "ceil_mode": True}),
        ((4, 13, 13), {"kernel_size": 3, "stride": 1, "padding": 1, "count_include_pad": False}),
    )

    type: Literal["avgpool2d"]
    count_include_pad: bool = Field(True, description="Count zero padding in the average (PyTorch's default).")

    def analyze(self, inp: LayerInput) -> Analysis:
        return self._analyze(inp, "avgpool2d")


class AdaptiveAvgPool2d(Layer):
    """Adaptive average pooling to a fixed output size (PyTorch ``nn.AdaptiveAvgPool2d``).

    out = (C, output_h, output_w) whatever the input size; window i covers
    [floor(i·in/out), ceil((i+1)·in/out)). params = 0, MACs = 0.
    The receptive-field window is taken as kernel ceil(in/out), stride floor(in/out), exact when
    out divides in.
    """

    category = "pooling"
    synonyms = {"size": "output_size"}
    type_synonyms = ("adaptiveavgpool2d",)

    examples = (
        ((8, 13, 13), {"output_size": 6}),
        ((8, 12, 12), {"output_size": 6}),
        ((4, 7, 9), {"output_size": [3, 2]}),
    )

    type: Literal["adaptive_avgpool2d"]
    output_size: Pair = Field(description="Output size: an int or [height, width].")

    def analyze(self, inp: LayerInput) -> Analysis:
        c, h, w = require_spatial(inp, "adaptive_avgpool2d")
        oh, ow = self.output_size
        kernel = (math.ceil(h / oh), math.ceil(w / ow))
        stride = (max(h // oh, 1), max(w // ow, 1))
        return Analysis(output=(c, oh, ow), window=Window(kernel, stride),
                        resolved={"divides": h % oh == 0 and w % ow == 0, "input_hw": (h, w)})


class GlobalAvgPool2d(Layer):
    """The mean over height and width of each channel (Keras ``GlobalAveragePooling2D``, PyTorch
    ``nn.AdaptiveAvgPool2d(1)``, flattened unless ``keepdims``).

    out = (C,), or (C, 1, 1) with ``keepdims`` (for a squeeze-and-excitation gate); params = 0,
    MACs = 0.
    """

    category = "pooling"

    examples = (((8, 7, 7), {}), ((4, 5, 3), {"keepdims": True}))

    type: Literal["global_avgpool2d"]
    keepdims: bool = Field(False, description="Keep C×1×1 instead of C flat features.")

    def analyze(self, inp: LayerInput) -> Analysis:
        c, _, _ = require_spatial(inp, "global_avgpool2d")
        return Analysis(output=(c, 1, 1) if self.keepdims else (c,), sees_whole_input=True)
