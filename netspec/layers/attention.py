"""Attention."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field, PositiveInt

from netspec.layers.base import (
    CHANNELS_LAST,
    PARTITIONS,
    TOKENS,
    Analysis,
    Layer,
    LayerInput,
    NonNegativePair,
    Pair,
    ShapeIssue,
    TensorShape,
    WeightTensor,
    Window,
    require_channels_last_image,
    require_partitioned,
    require_tokens,
)


class MultiheadAttention(Layer):
    """Multi-head self-attention over a token sequence L×D (PyTorch ``nn.MultiheadAttention`` with
    ``batch_first=True``, called on (x, x, x) as ViT's encoder blocks call it), with PyTorch's packed
    weights: ``in_proj_weight`` (3·D×D, the query, key and value projections stacked),
    ``in_proj_bias``, ``out_proj.weight`` and ``out_proj.bias``.

        q, k, v = split(x · in_projᵀ + b);  per head: softmax(q·kᵀ / sqrt(D/heads)) · v;  out_proj of the heads joined

    Shape unchanged. params = 4·D² + 4·D (with bias). MACs = 4·L·D² (the four projections) + 2·L²·D
    (scores and weighted sum), as torchvision's published operation counts take them. Training
    keeps the heads·L² attention weights too, which the memory estimate counts.
    """

    category = "attention"
    input_channel_keys = ("embed_dim",)
    chains_as_module = False
    synonyms = {"heads": "num_heads", "n_heads": "num_heads", "attention_dropout": "dropout",
                "use_bias": "bias"}
    type_synonyms = ("attention", "self_attention", "multi_head_attention", "mha")

    examples = (
        (TensorShape((5, 8), TOKENS), {"num_heads": 2}),
        (TensorShape((4, 12), TOKENS), {"num_heads": 3, "dropout": 0.1}),
        (TensorShape((6, 8), TOKENS), {"num_heads": 4, "bias": False}),
    )

    weights = (WeightTensor("in_proj_weight", "in_proj_kernel", to_keras=(1, 0)),
               WeightTensor("in_proj_bias", "in_proj_bias", needs="bias"),
               WeightTensor("out_proj.weight", "out_proj_kernel", to_keras=(1, 0)),
               WeightTensor("out_proj.bias", "out_proj_bias", needs="bias"))

    type: Literal["multihead_attention"]
    num_heads: PositiveInt = Field(description="Heads the features are split into; must divide them.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the attention weights, in training.")
    bias: bool = Field(True, description="Biases on the projections.")

    def analyze(self, inp: LayerInput) -> Analysis:
        require_tokens(inp, "multihead_attention attends over")
        length, features = inp.shape
        if features % self.num_heads:
            divisors = [d for d in range(1, features + 1) if features % d == 0]
            raise ShapeIssue(f"num_heads={self.num_heads} does not divide the {features} features of each token",
                             field="num_heads", hint=f"one of {', '.join(map(str, divisors[-6:]))}")
        params = 4 * features * features + (4 * features if self.bias else 0)
        return Analysis(output=inp.shape, params=params,
                        macs=4 * length * features * features + 2 * length * length * features,
                        sees_whole_input=True, kept_elements=self.num_heads * length * length,
                        resolved={"embed_dim": features})


class WindowAttention(Layer):
    """Multi-head self-attention within non-overlapping windows of a channels-last image H×W×C, with
    a learned relative-position bias and, with ``shift``, the windows rolled by ``shift`` pixels
    first (Swin's W-MSA and SW-MSA, torchvision's ``ShiftedWindowAttention``). The image is padded
    at the bottom and right to whole windows; a shifted window that wraps around attends only within
    each of the regions it joins; the padding is cropped again. Along an axis one window covers there
    is nothing to shift past, so there is no shift (as torchvision decides, when it runs). PyTorch's
    names: ``qkv`` (Linear C→3C), ``proj`` (Linear C→C), ``relative_position_bias_table``
    ((2·wh-1)·(2·ww-1) × heads) and the ``relative_position_index`` buffer it computes.

    Shape unchanged. params = 4·C² + 4·C (with biases) + the table. MACs per padded pixel =
    4·C² (the projections) + 2·wh·ww·C (scores and weighted sums), as torchvision's operation counts
    take them. Training keeps heads · wh·ww attention weights per padded pixel.
    """

    category = "attention"
    input_channel_keys = ("dim",)
    synonyms = {"heads": "num_heads", "window": "window_size", "shift_size": "shift", "use_bias": "bias",
                "qkv_bias": "bias"}
    type_synonyms = ("shifted_window_attention", "swin_attention", "windowed_attention")

    examples = (
        (TensorShape((6, 6, 8), CHANNELS_LAST[2]), {"num_heads": 2, "window_size": 3}),
        (TensorShape((6, 6, 8), CHANNELS_LAST[2]), {"num_heads": 2, "window_size": 3, "shift": 1}),
        (TensorShape((5, 7, 12), CHANNELS_LAST[2]), {"num_heads": 3, "window_size": [2, 3], "shift": 1,
                                                     "bias": False}),
    )

    weights = (WeightTensor("qkv.weight", "qkv_kernel", to_keras=(1, 0)),
               WeightTensor("qkv.bias", "qkv_bias", needs="bias"),
               WeightTensor("proj.weight", "proj_kernel", to_keras=(1, 0)),
               WeightTensor("proj.bias", "proj_bias", needs="bias"),
               WeightTensor("relative_position_bias_table", "relative_position_bias_table"))
    # computed from the window size in both frameworks; PyTorch keeps it in the state dict
    torch_only_buffers = ("relative_position_index",)

    def torch_buffer_elements(self, resolved: dict[str, Any]) -> int:
        return math.prod(self.window_size) ** 2  # a table row per pair of pixels of a window

    type: Literal["window_attention"]
    num_heads: PositiveInt = Field(description="Heads the channels are split into; must divide them.")
    window_size: Pair = Field(description="The window, an int or [height, width] (Swin: 7).")
    shift: NonNegativePair = Field((0, 0), description="Pixels the windows are shifted by, an int or [down, right] "
                                   "(Swin: 0 in even blocks, half the window in odd ones).")
    attention_dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the attention weights, in training.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the output, in training.")
    bias: bool = Field(True, description="Biases on the qkv and output projections.")

    def analyze(self, inp: LayerInput) -> Analysis:
        height, width, channels = require_channels_last_image(inp, "window_attention attends within windows of")
        if channels % self.num_heads:
            divisors = [d for d in range(1, channels + 1) if channels % d == 0]
            raise ShapeIssue(f"num_heads={self.num_heads} does not divide the {channels} channels",
                             field="num_heads", hint=f"one of {', '.join(map(str, divisors[-6:]))}")
        for shift, window, axis in zip(self.shift, self.window_size, ("height", "width"), strict=True):
            if shift >= window:
                raise ShapeIssue(f"a shift of {shift} is not less than the window's {axis} of {window}", field="shift",
                                 hint=f"Swin shifts by half the window: {window // 2}")
        padded = tuple(-(-size // window) * window for size, window in zip((height, width), self.window_size,
                                                                            strict=True))
        window_pixels = math.prod(self.window_size)
        pixels = math.prod(padded)
        table = (2 * self.window_size[0] - 1) * (2 * self.window_size[1] - 1) * self.num_heads
        params = 4 * channels * channels + (4 * channels if self.bias else 0) + table
        return Analysis(output=inp.shape, params=params,
                        macs=pixels * (4 * channels * channels + 2 * window_pixels * channels),
                        window=Window(self.window_size, (1, 1)),  # a pixel reads its whole window
                        kept_elements=self.num_heads * pixels * window_pixels,
                        resolved={"dim": channels})


class RelativeAttention(Layer):
    """Multi-head self-attention within each group of a partitioned image (Gh×Gw×P×D, from
    ``partition``), with a learned bias per head and relative position of two tokens in their
    size×size group: torchvision's ``RelativePositionalMultiHeadAttention``, MaxViT's block and grid
    attention. As torchvision computes it, the scores are scaled by 1/sqrt(D), the token's
    features, not by 1/sqrt(D/heads). PyTorch's names: ``to_qkv`` (Linear D→3D, the queries, keys
    and values side by side), ``merge`` (Linear D→D), ``relative_position_bias_table``
    ((2·size-1)² × heads) and the ``relative_position_index`` buffer it computes.

    Shape unchanged. params = 4·D² + 4·D + the table. MACs per token = 4·D² (the projections) +
    2·P·D (scores and weighted sums). Training keeps heads · P attention weights per token. A
    window's token sees its size×size window; a grid's sees the whole image.
    """

    category = "attention"
    input_channel_keys = ("dim",)
    synonyms = {"heads": "num_heads", "n_heads": "num_heads"}
    type_synonyms = ("relative_positional_attention", "relative_position_attention", "partition_attention")

    examples = (
        (TensorShape((2, 3, 4, 8), PARTITIONS["window"]), {"num_heads": 2}),
        (TensorShape((3, 2, 9, 6), PARTITIONS["grid"]), {"num_heads": 3}),
    )

    weights = (WeightTensor("to_qkv.weight", "to_qkv_kernel", to_keras=(1, 0)),
               WeightTensor("to_qkv.bias", "to_qkv_bias"),
               WeightTensor("merge.weight", "merge_kernel", to_keras=(1, 0)),
               WeightTensor("merge.bias", "merge_bias"),
               WeightTensor("relative_position_bias_table", "relative_position_bias_table"))
    # computed from the group's size in both frameworks; PyTorch keeps it in the state dict
    torch_only_buffers = ("relative_position_index",)

    def torch_buffer_elements(self, resolved: dict[str, Any]) -> int:
        return resolved["size"] ** 4  # a table row per pair of tokens of a size×size group

    type: Literal["relative_attention"]
    num_heads: PositiveInt = Field(description="Heads the features are split into; must divide them (MaxViT: "
                                               "features / 32).")

    def analyze(self, inp: LayerInput) -> Analysis:
        by, rows, cols, size, features = require_partitioned(inp, "relative_attention attends within the groups of")
        if features % self.num_heads:
            divisors = [d for d in range(1, features + 1) if features % d == 0]
            raise ShapeIssue(f"num_heads={self.num_heads} does not divide the {features} features of each token",
                             field="num_heads", hint=f"one of {', '.join(map(str, divisors[-6:]))}")
        tokens = size * size
        positions = rows * cols * tokens
        table = (2 * size - 1) ** 2 * self.num_heads
        return Analysis(output=inp.shape, params=4 * features * features + 4 * features + table,
                        macs=positions * (4 * features * features + 2 * tokens * features),
                        window=Window((size, size), (1, 1)) if by == "window" else None,
                        sees_whole_input=by == "grid", kept_elements=self.num_heads * positions * tokens,
                        resolved={"dim": features, "size": size})
