"""Merges: layers that take several inputs (``inputs: [a, b]``) and make one output of them."""

from __future__ import annotations

import math
from typing import ClassVar, Literal

from netspec.layers.base import (
    AXES,
    TOKENS,
    Analysis,
    Layer,
    LayerInput,
    ShapeIssue,
    TensorShape,
    features_last,
    fmt_shape,
    layout_of,
    spatial_rank,
    with_layout,
)


class _Merge(Layer):
    category = "merge"
    arity: ClassVar[tuple[int, int | None]] = (2, None)
    commutative: ClassVar[bool] = False  # the same output whatever the order of its inputs

    def analyze(self, inp: LayerInput) -> Analysis:
        return self.analyze_inputs([inp])


def _listing(inputs: list[LayerInput]) -> str:
    return ", ".join(f"{fmt_shape(i.shape)} from {i.producer}" for i in inputs)


class Add(_Merge):
    """Element-wise sum of inputs of one shape (a residual connection).

    out = the inputs' shape; params = 0; MACs = (inputs - 1) · numel (the additions).
    """

    examples = ((((8, 5, 5), (8, 5, 5)), {}), (((6,), (6,), (6,)), {}),
                ((TensorShape((4, 6), TOKENS), TensorShape((4, 6), TOKENS)), {}))

    type: Literal["add"]
    commutative = True

    def analyze_inputs(self, inputs: list[LayerInput]) -> Analysis:
        first = inputs[0]
        for other in inputs[1:]:
            mine, theirs = layout_of(first.shape), layout_of(other.shape)
            if other.shape == first.shape and mine != theirs:
                raise ShapeIssue(
                    f"add needs inputs of one layout, but {first.producer} yields {mine.kind} ({mine.name}) and "
                    f"{other.producer} yields {theirs.kind} ({theirs.name}), the same sizes in another order",
                    field="inputs", hint="bring them to one layout first (departition, or permute)")
            if other.shape != first.shape or mine != theirs:
                raise ShapeIssue(
                    f"add needs inputs of one shape, but {first.producer} yields {fmt_shape(first.shape)} "
                    f"and {other.producer} yields {fmt_shape(other.shape)}", field="inputs",
                    hint="a residual's shortcut needs the same channels and size: give it a 1×1 convolution "
                         "with the same stride (a downsample path)")
        numel = 1
        for d in first.shape:
            numel *= d
        return Analysis(output=first.shape, macs=(len(inputs) - 1) * numel)


class Concat(_Merge):
    """Concatenation along channels (images: C×H×W with the same H and W) or features (flat
    inputs; each token's features, for token sequences of one length), as Inception's branches and
    DenseNet's layers join. params = 0, MACs = 0.

    out = (C1 + C2 + ..., H, W), (F1 + F2 + ...,), or (L, D1 + D2 + ...)
    """

    examples = ((((4, 5, 5), (6, 5, 5)), {}), (((3,), (5,)), {}),
                ((TensorShape((4, 6), TOKENS), TensorShape((4, 3), TOKENS)), {}))

    type: Literal["concat"]

    def analyze_inputs(self, inputs: list[LayerInput]) -> Analysis:
        first = inputs[0]
        if any(features_last(i.shape) for i in inputs):
            layout = layout_of(first.shape)
            if not all(layout_of(i.shape) == layout and i.shape[:-1] == first.shape[:-1] for i in inputs):
                raise ShapeIssue(f"concat joins tensors with their features last along their features and needs "
                                 f"one layout and the same positions, but got {_listing(inputs)}", field="inputs")
            # the features are the last axis in both frameworks
            return Analysis(output=with_layout((*first.shape[:-1], sum(i.shape[-1] for i in inputs)), layout),
                            resolved={"dim": -1})
        for other in inputs[1:]:
            if len(other.shape) != len(first.shape) or other.shape[1:] != first.shape[1:]:
                what = (f"the same {' and '.join(AXES[spatial_rank(first.shape)])}"
                        if len(other.shape) == len(first.shape) and spatial_rank(first.shape) else "the same rank")
                raise ShapeIssue(f"concat joins along channels and needs {what}, but got {_listing(inputs)}",
                                 field="inputs", hint="pad or pool the branches to one size before joining them")
        return Analysis(output=(sum(i.shape[0] for i in inputs), *first.shape[1:]), resolved={"dim": 1})


class Multiply(_Merge):
    """Element-wise product of two inputs: of one shape, or a C×1×1 gate that scales each channel
    of a C×H×W input (squeeze-and-excitation; C×1 for a C×L sequence). out = the larger input's shape; params = 0;
    MACs = its numel."""

    arity = (2, 2)

    examples = ((((8, 5, 5), (8, 1, 1)), {}), (((4, 3, 3), (4, 3, 3)), {}))

    type: Literal["multiply"]
    commutative = True

    def analyze_inputs(self, inputs: list[LayerInput]) -> Analysis:
        a, b = inputs
        if features_last(a.shape) or features_last(b.shape):
            if a.shape != b.shape or layout_of(a.shape) != layout_of(b.shape):
                raise ShapeIssue(f"multiply needs tensors with their features last of one shape and layout, but got "
                                 f"{_listing(inputs)}", field="inputs")
            return Analysis(output=a.shape, macs=math.prod(a.shape))
        big = a if spatial_rank(a.shape) and any(d != 1 for d in a.shape[1:]) else b
        small = b if big is a else a
        gate = spatial_rank(big.shape) > 0 and small.shape == (big.shape[0], *(1,) * spatial_rank(big.shape))
        if a.shape != b.shape and not gate:
            raise ShapeIssue(f"multiply needs inputs of one shape, or a C×1×1 gate for a C×H×W input, but got "
                             f"{_listing(inputs)}", field="inputs",
                             hint="make the gate with global_avgpool2d (keepdims: true) and 1×1 convolutions "
                                  "to the input's channel count")
        numel = 1
        for d in big.shape:
            numel *= d
        return Analysis(output=big.shape, macs=numel)
