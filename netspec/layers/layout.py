"""Layout operations: layers that reorder or regroup a tensor's axes without computing anything.

The checker's shapes carry their layout (netspec.layers.base.Layout), so these change it: a
channels-first image becomes channels last for ConvNeXt's per-pixel LayerNorm and Linear, an image
becomes a token sequence for ViT, a sequence gives up its class token for the classifier, an
image's pixels are grouped for MaxViT's attention within windows and grids and put back.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, WithJsonSchema

from netspec.layers.base import (
    CHANNELS_FIRST,
    CHANNELS_LAST,
    PARTITIONS,
    TOKENS,
    Analysis,
    Layer,
    LayerInput,
    ShapeIssue,
    TensorShape,
    Window,
    features_last,
    fmt_shape,
    is_tokens,
    layout_of,
    partition_of,
    require_channels_last_image,
    require_partitioned,
    require_spatial,
    with_layout,
)


def _to_last(rank: int) -> tuple[int, ...]:
    """torch.permute's dims (batch included) that move the channels of ``rank`` spatial axes last."""
    return (0, *range(2, rank + 2), 1)


def _to_first(rank: int) -> tuple[int, ...]:
    return (0, rank + 1, *range(1, rank + 1))


def _integers(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


Dims = Annotated[tuple[int, ...], BeforeValidator(_integers),
                 WithJsonSchema({"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 2})]


class Permute(Layer):
    """Moves the channels between first and last, as ``torch.permute`` with ``dims`` (the batch
    axis 0 included, as torchvision's ``Permute([0, 2, 3, 1])`` in ConvNeXt and Swin writes them):
    ``[0, 2, 3, 1]`` takes a channels-first image C×H×W to channels last H×W×C, where linear and
    layernorm act on each pixel's channels; ``[0, 3, 1, 2]`` takes it back; ``[0, 2, 1]`` makes a
    sequence C×L a token sequence L×C. Keras holds every tensor with its channels last already, so
    there the layer is the identity. params = 0, MACs = 0.
    """

    category = "reshape"

    examples = (((6, 4, 5), {"dims": [0, 2, 3, 1]}), ((8, 7), {"dims": [0, 2, 1]}))

    type: Literal["permute"]
    dims: Dims = Field(description="The new order of the axes, batch (0) included, as torch.permute takes it.")

    def analyze(self, inp: LayerInput) -> Analysis:
        layout = layout_of(inp.shape)
        rank = len(inp.shape) - 1
        if partition_of(inp.shape):
            raise ShapeIssue(f"permute moves the channels between first and last, and {inp.producer} yields "
                             f"{layout.kind} ({layout.name} {fmt_shape(inp.shape)})", field="dims",
                             hint="put the pixels back in place first: {type: departition}")
        if rank >= 1 and layout.channels_first and self.dims == _to_last(rank):
            return Analysis(output=with_layout((*inp.shape[1:], inp.shape[0]), CHANNELS_LAST[rank]))
        if rank >= 1 and not layout.channels_first and self.dims == _to_first(rank):
            return Analysis(output=(inp.shape[-1], *inp.shape[:-1]))
        if rank == 0:
            raise ShapeIssue(f"permute needs channels and positions, but {inp.producer} yields flat features "
                             f"{fmt_shape(inp.shape)}", field="dims")
        wanted = _to_last(rank) if layout.channels_first else _to_first(rank)
        target = CHANNELS_LAST[rank] if layout.channels_first else CHANNELS_FIRST[rank]
        raise ShapeIssue(f"permute moves the channels between first and last, and {inp.producer} yields "
                         f"{layout.kind} ({layout.name} {fmt_shape(inp.shape)}), which dims: {list(self.dims)} does "
                         "not", field="dims", hint=f"dims: {list(wanted)} gives {target.name}")


class ToTokens(Layer):
    """One token per position: a channels-first image C×H×W (or sequence C×L), or a channels-last
    grid, becomes a token sequence of H·W tokens of C features, row by row, as ViT turns its patch
    embedding into tokens (``x.flatten(2).transpose(1, 2)``). params = 0, MACs = 0.
    """

    category = "reshape"
    type_synonyms = ("tokens", "patchify", "flatten_tokens")

    examples = (((6, 4, 5), {}), ((8, 7), {}))

    type: Literal["to_tokens"]

    def analyze(self, inp: LayerInput) -> Analysis:
        layout = layout_of(inp.shape)
        if len(inp.shape) < 2 or is_tokens(inp.shape):
            what = f"flat features {fmt_shape(inp.shape)}" if len(inp.shape) < 2 else "a token sequence already"
            raise ShapeIssue(f"to_tokens needs channels and positions (an image or a sequence), but {inp.producer} "
                             f"yields {what}", hint="remove this layer" if len(inp.shape) > 1 else None)
        channels = inp.shape[0] if layout.channels_first else inp.shape[-1]
        positions = inp.shape[1:] if layout.channels_first else inp.shape[:-1]
        return Analysis(output=TensorShape((math.prod(positions), channels), TOKENS),
                        resolved={"channels_first": layout.channels_first, "channels": channels})


class Select(Layer):
    """One token of a token sequence, as its features: ViT's classifier reads the class token
    (``x[:, 0]``). out = (D,); params = 0, MACs = 0."""

    category = "reshape"
    type_synonyms = ("select_token", "index")

    examples = ((TensorShape((5, 8), TOKENS), {}), (TensorShape((4, 6), TOKENS), {"index": 3}))

    type: Literal["select"]
    index: int = Field(0, description="Which token, from 0; negative counts from the end (-1: the last).")

    def analyze(self, inp: LayerInput) -> Analysis:
        if not is_tokens(inp.shape):
            raise ShapeIssue(f"select picks one token of a token sequence, but {inp.producer} yields "
                             f"{layout_of(inp.shape).kind} {fmt_shape(inp.shape)}",
                             hint="make tokens first (to_tokens), or pool the positions (global_avgpool2d)")
        length = inp.shape[0]
        if not -length <= self.index < length:
            raise ShapeIssue(f"index {self.index} is outside the {length} tokens {inp.producer} yields",
                             field="index", hint=f"an index from {-length} to {length - 1}")
        return Analysis(output=(inp.shape[1],))


class Chunk(Layer):
    """One of ``chunks`` equal parts of the channels (the features, for features last), as
    ``x.chunk(chunks, dim=1)[index]``: ShuffleNetV2 splits its input in two halves, one through the
    branch, one passed on. out = the input with channels / chunks; params = 0, MACs = 0."""

    category = "reshape"
    synonyms = {"split": "chunks", "num_or_size_splits": "chunks"}
    chains_as_module = False
    type_synonyms = ("split", "channel_split")

    examples = (((8, 4, 4), {"chunks": 2, "index": 1}), ((6, 5), {"chunks": 3}),
                (TensorShape((4, 6), TOKENS), {"chunks": 2, "index": 1}))

    type: Literal["chunk"]
    chunks: int = Field(ge=2, description="Equal parts the channels are split into; must divide them.")
    index: int = Field(0, ge=0, description="Which part, from 0.")

    def analyze(self, inp: LayerInput) -> Analysis:
        last = features_last(inp.shape) or len(inp.shape) == 1
        channels = inp.shape[-1] if last else inp.shape[0]
        if channels % self.chunks:
            raise ShapeIssue(f"chunks={self.chunks} does not divide the {channels} channels {inp.producer} yields",
                             field="chunks", hint="split into parts that divide the channels")
        if self.index >= self.chunks:
            raise ShapeIssue(f"index {self.index} is not one of the {self.chunks} chunks", field="index",
                             hint=f"an index from 0 to {self.chunks - 1}")
        size = channels // self.chunks
        sizes = (*inp.shape[:-1], size) if last else (size, *inp.shape[1:])
        return Analysis(output=with_layout(sizes, layout_of(inp.shape)), resolved={"dim": -1 if last else 1})


class ChannelShuffle(Layer):
    """ShuffleNet's channel shuffle (PyTorch ``nn.ChannelShuffle``): the channels of a channels-first
    tensor, seen as ``groups`` rows, read column by column, so that the next grouped or split layer
    mixes what the groups computed apart. Shape unchanged; params = 0, MACs = 0."""

    category = "reshape"
    synonyms = {"num_groups": "groups"}
    type_synonyms = ("shuffle", "channelshuffle")

    examples = (((8, 3, 3), {"groups": 2}), ((6, 4), {"groups": 3}))

    type: Literal["channel_shuffle"]
    groups: int = Field(ge=2, description="Groups the channels are seen as; must divide them.")

    def analyze(self, inp: LayerInput) -> Analysis:
        if features_last(inp.shape) or len(inp.shape) == 1:
            raise ShapeIssue(f"channel_shuffle shuffles the channels of a channels-first tensor, but {inp.producer} "
                             f"yields {layout_of(inp.shape).kind} {fmt_shape(inp.shape)}")
        if inp.shape[0] % self.groups:
            raise ShapeIssue(f"groups={self.groups} does not divide the {inp.shape[0]} channels", field="groups")
        return Analysis(output=inp.shape)


class PatchMerge(Layer):
    """Each 2×2 block of pixels of a channels-last image H×W×C put side by side in one pixel:
    ⌈H/2⌉×⌈W/2⌉×4C, a zero row or column added first to an odd side, the four pixels in Swin's order
    (top-left, bottom-left, top-right, bottom-right), as torchvision's PatchMerging gathers them before
    its LayerNorm and Linear. params = 0, MACs = 0."""

    category = "reshape"
    type_synonyms = ("patch_merging", "space_to_depth")

    examples = ((TensorShape((4, 6, 3), CHANNELS_LAST[2]), {}), (TensorShape((5, 3, 2), CHANNELS_LAST[2]), {}))

    type: Literal["patch_merge"]

    def analyze(self, inp: LayerInput) -> Analysis:
        height, width, channels = require_channels_last_image(inp, "patch_merge gathers 2×2 pixels of")
        return Analysis(output=TensorShape((-(-height // 2), -(-width // 2), 4 * channels), CHANNELS_LAST[2]),
                        window=Window((2, 2), (2, 2)))


class Partition(Layer):
    """An image's pixels grouped for attention within each group, as MaxViT partitions its feature
    map (torchvision's ``WindowPartition``, and for a grid its ``SwapAxes`` after): a channels-first
    image C×H×W becomes H/size × W/size groups of size² tokens of C features (Gh×Gw×P×D).
    ``by: window`` groups each size×size block of neighbouring pixels; ``by: grid`` groups
    size×size pixels spread evenly over the whole image, H/size rows and W/size columns apart (the
    pixels at the same place in each cell of a size×size grid). Within a group, tokens go row by
    row. H and W must be multiples of ``size``. params = 0, MACs = 0.
    """

    category = "reshape"
    synonyms = {"partition_size": "size", "partition_type": "by", "kind": "by", "window_size": "size",
                "grid_size": "size"}
    type_synonyms = ("window_partition", "grid_partition")
    value_fields = ("by",)

    examples = (((4, 6, 6), {"by": "window", "size": 3}), ((4, 6, 4), {"by": "grid", "size": 2}))

    type: Literal["partition"]
    by: Literal["window", "grid"] = Field(description="window: blocks of neighbouring pixels; grid: pixels spread "
                                          "evenly over the image.")
    size: int = Field(ge=1, description="Pixels per group along each axis (MaxViT: 7); must divide the height and "
                                        "width.")

    def analyze(self, inp: LayerInput) -> Analysis:
        channels, (height, width) = require_spatial(inp, f"partition (by: {self.by})", 2)
        if height % self.size or width % self.size:
            fitting = [d for d in range(1, min(height, width) + 1) if height % d == 0 and width % d == 0]
            shown = fitting if len(fitting) <= 8 else fitting[-8:]
            raise ShapeIssue(f"size {self.size} does not divide the sides of the {height}×{width} image from "
                             f"{inp.producer}", field="size",
                             hint=f"a size that divides both ({', '.join(map(str, shown))}), or an input that makes "
                                  f"this image's sides multiples of {self.size}")
        return Analysis(output=TensorShape((height // self.size, width // self.size, self.size * self.size,
                                            channels), PARTITIONS[self.by]))


class Departition(Layer):
    """Puts the pixels a ``partition`` grouped back in place: Gh×Gw×P×D becomes a channels-first
    image D×H×W, as torchvision's ``WindowDepartition`` (after its ``SwapAxes`` for a grid). It
    reads how they were grouped from its input. params = 0, MACs = 0."""

    category = "reshape"
    type_synonyms = ("window_departition", "grid_departition", "unpartition")
    value_fields = ("by",)  # resolved from its input

    examples = ((TensorShape((2, 3, 4, 5), PARTITIONS["window"]), {}), (TensorShape((3, 2, 9, 4), PARTITIONS["grid"]),
                                                                         {}))

    type: Literal["departition"]

    def analyze(self, inp: LayerInput) -> Analysis:
        by, rows, cols, size, features = require_partitioned(inp, "departition puts back in place the pixels of")
        return Analysis(output=(features, rows * size, cols * size), resolved={"by": by, "size": size})
