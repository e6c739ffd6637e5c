"""Pooling."""

from __future__ import annotations

import math
from typing import ClassVar, Literal

from pydantic import Field

from netspec.layers.base import (
    AXES,
    Analysis,
    Layer,
    LayerInput,
    Length,
    LengthPadding,
    Padding,
    Pair,
    ShapeIssue,
    Triple,
    TriplePadding,
    Window,
    require_spatial,
    resolve_padding,
    spatial_output,
)


class _WindowPool(Layer):
    """A pooling window of any rank; a concrete class sets ``rank`` and its per-axis fields."""

    rank: ClassVar[int]
    averages: ClassVar[bool] = False  # TensorFlow's 'same' leaves padding out of an average; PyTorch cannot
    category = "pooling"
    synonyms = {"pool_size": "kernel_size", "strides": "stride"}

    type: str  # each concrete class's Literal; declared here to keep the fields in this order
    kernel_size: tuple[int, ...]
    stride: tuple[int, ...] | None
    padding: tuple[int, ...] | str
    ceil_mode: bool = Field(False, description="Round the output size up (PyTorch's ceil_mode).")

    def analyze(self, inp: LayerInput) -> Analysis:
        what = self.kind
        c, spatial = require_spatial(inp, what, self.rank)
        stride = self.stride or self.kernel_size
        if isinstance(self.padding, tuple):
            for pad, k, axis in zip(self.padding, self.kernel_size, AXES[self.rank], strict=True):
                if pad > k // 2:
                    raise ShapeIssue(
                        f"padding {pad} is more than half the kernel {k}" + (f" along the {axis}" if self.rank > 1
                                                                             else ""),
                        field="padding", hint=f"use padding of at most {k // 2} (PyTorch refuses more)")
        if self.averages and self.padding == "same":
            raise ShapeIssue(f"{what} does not take padding 'same': TensorFlow leaves the padding out of "
                             "each average and PyTorch cannot, so the frameworks would disagree",
                             field="padding", hint=f"use explicit padding (padding: {self.kernel_size[0] // 2}), "
                             "whose zeros both frameworks count in the average, or padding: valid")
        if self.ceil_mode and self.padding == "same":
            raise ShapeIssue("ceil_mode has no effect with padding 'same'", field="ceil_mode",
                             hint="drop ceil_mode or use explicit padding")
        pads = resolve_padding(self.padding, spatial, self.kernel_size, stride)
        out = spatial_output(inp, spatial, self.kernel_size, stride, pads, ceil_mode=self.ceil_mode)
        return Analysis(output=(c, *out), window=Window(self.kernel_size, stride),
                        resolved={"stride": stride, "padding": pads})


class _MaxPool(_WindowPool):
    pad_value = float("-inf")


class _AvgPool(_WindowPool):
    averages = True
    count_include_pad: bool = Field(True, description="Count zero padding in the average (PyTorch's default).")


class MaxPool1d(_MaxPool):
    """Max pooling over a sequence (PyTorch ``nn.MaxPool1d``, Keras ``MaxPooling1D``); padding counts as -inf.

    L' = floor((L + pad_before + pad_after - kernel) / stride) + 1  (ceil with ``ceil_mode``)
    params = 0, MACs = 0
    """

    rank = 1
    type_synonyms = ("max_pool1d", "maxpooling1d")

    examples = (
        ((8, 55), {"kernel_size": 3, "stride": 2}),
        ((4, 16), {"kernel_size": 2}),
        ((4, 14), {"kernel_size": 3, "stride": 2, "ceil_mode": True}),
        ((4, 13), {"kernel_size": 3, "stride": 2, "padding": 1}),
        ((4, 13), {"kernel_size": 3, "stride": 2, "padding": "same"}),
        ((4, 12), {"kernel_size": 3, "stride": 2, "padding": "same"}),  # pads 0 | 1, with -inf
    )

    type: Literal["maxpool1d"]
    kernel_size: Length = Field(description="Window length.")
    stride: Length | None = Field(None, description="Defaults to the kernel size, as in PyTorch and Keras.")
    padding: LengthPadding = Field((0,), description="An int, 'valid', or TensorFlow-style 'same'.")


class MaxPool2d(_MaxPool):
    """Max pooling (PyTorch ``nn.MaxPool2d``, Keras ``MaxPooling2D``); padding counts as -inf.

    out = floor((in + pad_before + pad_after - kernel) / stride) + 1  (ceil with ``ceil_mode``)
    params = 0, MACs = 0 (comparisons are not multiply-accumulates)
    """

    rank = 2
    type_synonyms = ("maxpool", "max_pool2d", "maxpooling2d")

    examples = (
        ((8, 55, 55), {"kernel_size": 3, "stride": 2}),
        ((4, 16, 16), {"kernel_size": 2}),
        ((4, 14, 14), {"kernel_size": 3, "stride": 2, "ceil_mode": True}),
        ((4, 13, 11), {"kernel_size": 3, "stride": 2, "padding": 1}),
        ((4, 13, 13), {"kernel_size": 3, "stride": 2, "padding": "same"}),
    )

    type: Literal["maxpool2d"]
    kernel_size: Pair = Field(description="Window size: an int or [height, width].")
    stride: Pair | None = Field(None, description="Defaults to the kernel size, as in PyTorch and Keras.")
    padding: Padding = Field((0, 0), description="An int, [height, width], 'valid', or TensorFlow-style "
                                      "'same'.")


class AvgPool1d(_AvgPool):
    """Average pooling over a sequence (PyTorch ``nn.AvgPool1d``, Keras ``AveragePooling1D``).

    L' = floor((L + pad_before + pad_after - kernel) / stride) + 1  (ceil with ``ceil_mode``)
    params = 0, MACs = 0
    """

    rank = 1
    type_synonyms = ("averagepooling1d",)

    examples = (
        ((8, 12), {"kernel_size": 2}),
        ((4, 14), {"kernel_size": 3, "stride": 2, "ceil_mode": True}),
        ((4, 13), {"kernel_size": 3, "stride": 1, "padding": 1, "count_include_pad": False}),
    )

    type: Literal["avgpool1d"]
    kernel_size: Length = Field(description="Window length.")
    stride: Length | None = Field(None, description="Defaults to the kernel size, as in PyTorch and Keras.")
    padding: LengthPadding = Field((0,), description="An int or 'valid'.")


class AvgPool2d(_AvgPool):
    """Average pooling (PyTorch ``nn.AvgPool2d``, Keras ``AveragePooling2D``).

    out = floor((in + pad_before + pad_after - kernel) / stride) + 1  (ceil with ``ceil_mode``)
    params = 0, MACs = 0
    """

    rank = 2
    type_synonyms = ("avgpool", "averagepooling2d")

    examples = (
        ((8, 12, 12), {"kernel_size": 2}),
        ((4, 14, 14), {"kernel_size": 3, "stride": 2, "ceil_mode": True}),
        ((4, 13, 13), {"kernel_size": 3, "stride": 1, "padding": 1, "count_include_pad": False}),
    )

    type: Literal["avgpool2d"]
    kernel_size: Pair = Field(description="Window size: an int or [height, width].")
    stride: Pair | None = Field(None, description="Defaults to the kernel size, as in PyTorch and Keras.")
    padding: Padding = Field((0, 0), description="An int, [height, width], 'valid', or TensorFlow-style "
                                      "'same'.")


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
        c, (h, w) = require_spatial(inp, "adaptive_avgpool2d")
        oh, ow = self.output_size
        kernel = (math.ceil(h / oh), math.ceil(w / ow))
        stride = (max(h // oh, 1), max(w // ow, 1))
        return Analysis(output=(c, oh, ow), window=Window(kernel, stride),
                        resolved={"divides": h % oh == 0 and w % ow == 0, "input_hw": (h, w)})


class _GlobalAvgPool(Layer):
    """The mean over every spatial axis of each channel, for any rank."""

    rank: ClassVar[int]
    category = "pooling"

    type: str  # each concrete class's Literal; declared here to keep the fields in this order
    keepdims: bool = Field(False, description="Keep the spatial axes (of size 1) instead of flat features.")

    def analyze(self, inp: LayerInput) -> Analysis:
        c, _ = require_spatial(inp, self.kind, self.rank)
        return Analysis(output=(c, *(1,) * self.rank) if self.keepdims else (c,), sees_whole_input=True)


class GlobalAvgPool1d(_GlobalAvgPool):
    """The mean over the length of each channel (Keras ``GlobalAveragePooling1D``, PyTorch
    ``nn.AdaptiveAvgPool1d(1)``, flattened unless ``keepdims``).

    out = (C,), or (C, 1) with ``keepdims``; params = 0, MACs = 0.
    """

    rank = 1
    type_synonyms = ("globalaveragepooling1d",)
    examples = (((8, 7), {}), ((4, 5), {"keepdims": True}))

    type: Literal["global_avgpool1d"]


class GlobalAvgPool2d(_GlobalAvgPool):
    """The mean over height and width of each channel (Keras ``GlobalAveragePooling2D``, PyTorch
    ``nn.AdaptiveAvgPool2d(1)``, flattened unless ``keepdims``).

    out = (C,), or (C, 1, 1) with ``keepdims`` (for a squeeze-and-excitation gate); params = 0,
    MACs = 0.
    """

    rank = 2
    examples = (((8, 7, 7), {}), ((4, 5, 3), {"keepdims": True}))

    type: Literal["global_avgpool2d"]


class MaxPool3d(_MaxPool):
    """Max pooling over a volume (PyTorch ``nn.MaxPool3d``, Keras ``MaxPooling3D``); padding counts as -inf.

    out = floor((in + pad_before + pad_after - kernel) / stride) + 1 per axis (ceil with ``ceil_mode``)
    params = 0, MACs = 0
    """

    rank = 3
    type_synonyms = ("max_pool3d", "maxpooling3d")

    examples = (
        ((4, 8, 8, 8), {"kernel_size": 2}),
        ((3, 7, 9, 9), {"kernel_size": 3, "stride": 2, "padding": 1}),
        ((2, 7, 7, 6), {"kernel_size": [1, 3, 3], "stride": [1, 2, 2], "ceil_mode": True}),
    )

    type: Literal["maxpool3d"]
    kernel_size: Triple = Field(description="Window size: an int or [depth, height, width].")
    stride: Triple | None = Field(None, description="Defaults to the kernel size, as in PyTorch and Keras.")
    padding: TriplePadding = Field((0, 0, 0), description="An int, [depth, height, width], 'valid', or "
                                                      "TensorFlow-style 'same'.")


class AvgPool3d(_AvgPool):
    """Average pooling over a volume (PyTorch ``nn.AvgPool3d``, Keras ``AveragePooling3D``).

    out = floor((in + pad_before + pad_after - kernel) / stride) + 1 per axis (ceil with ``ceil_mode``)
    params = 0, MACs = 0
    """

    rank = 3
    type_synonyms = ("averagepooling3d",)

    examples = (
        ((4, 8, 8, 8), {"kernel_size": 2}),
        ((3, 6, 9, 9), {"kernel_size": [2, 3, 3], "stride": [2, 3, 3]}),
    )

    type: Literal["avgpool3d"]
    kernel_size: Triple = Field(description="Window size: an int or [depth, height, width].")
    stride: Triple | None = Field(None, description="Defaults to the kernel size, as in PyTorch and Keras.")
    padding: TriplePadding = Field((0, 0, 0), description="An int, [depth, height, width], 'valid', or "
                                                      "TensorFlow-style 'same'.")


class GlobalAvgPool3d(_GlobalAvgPool):
    """The mean over depth, height and width of each channel (Keras ``GlobalAveragePooling3D``,
    PyTorch ``nn.AdaptiveAvgPool3d(1)``, flattened unless ``keepdims``).

    out = (C,), or (C, 1, 1, 1) with ``keepdims``; params = 0, MACs = 0.
    """

    rank = 3
    type_synonyms = ("globalaveragepooling3d",)
    examples = (((8, 3, 5, 5), {}), ((4, 2, 3, 3), {"keepdims": True}))

    type: Literal["global_avgpool3d"]


class Upsample(Layer):
    """Upsampling of an image by whole factors (PyTorch ``nn.Upsample``, Keras ``UpSampling2D``):
    ``nearest`` repeats each pixel; ``bilinear`` interpolates between the four nearest input pixels,
    their centres aligned as PyTorch's ``align_corners=False`` (and TensorFlow's resize) align them.

        out = in · scale_factor

    params = 0. MACs = 0 for nearest; 3 per output value for bilinear (three linear interpolations).
    """

    category = "pooling"
    synonyms = {"size": "scale_factor", "scale": "scale_factor", "interpolation": "mode", "factor": "scale_factor"}
    type_synonyms = ("upsampling", "upsampling2d", "upsample2d", "interpolate", "resize")

    examples = (((3, 4, 5), {"scale_factor": 2}), ((2, 3, 4), {"scale_factor": 2, "mode": "bilinear"}),
                ((2, 3, 3), {"scale_factor": [3, 2], "mode": "bilinear"}))

    type: Literal["upsample"]
    scale_factor: Pair = Field(description="The whole factor each side grows by: an int or [height, width].")
    mode: Literal["nearest", "bilinear"] = Field("nearest", description="How new pixels are filled in.")

    def analyze(self, inp: LayerInput) -> Analysis:
        channels, spatial = require_spatial(inp, self.kind, 2)
        out = tuple(size * factor for size, factor in zip(spatial, self.scale_factor, strict=True))
        macs = 3 * channels * math.prod(out) if self.mode == "bilinear" else 0
        reads = (2, 2) if self.mode == "bilinear" else (1, 1)  # input pixels per output pixel, per axis
        return Analysis(output=(channels, *out), macs=macs, window=Window(reads, (1, 1), upsample=self.scale_factor))
