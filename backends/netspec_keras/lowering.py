"""How each catalogue layer becomes Keras layers, beyond its macro in templates/layers.py.j2.

Keras is channels-last and pads differently from PyTorch, so some layers need steps before their
own layer (explicit padding, a Permute before Flatten) or a helper layer of the generated module
(what Keras lacks). Each layer class that needs more than the shared rule has one lowering
function here, registered with ``@lowers``; what it needs (helpers, a Permute) it declares in its
``Lowering``, so nothing is decided by searching rendered text.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from netspec.analysis.checker import CheckedLayer
from netspec.codegen.render import py
from netspec.errors import Problem, SpecError
from netspec.layers.attention import MultiheadAttention, RelativeAttention, WindowAttention
from netspec.layers.base import LAYOUTS, Layer, layout_of, resolve_padding, spatial_rank, to_channels_first_axes
from netspec.layers.conv import ConvTranspose2d, _ConvNd
from netspec.layers.core import Flatten, Linear
from netspec.layers.layout import ChannelShuffle, Chunk, Departition, Partition, PatchMerge, Select
from netspec.layers.learned import ClassToken, LayerScale, PositionEmbedding
from netspec.layers.normalization import LocalResponseNorm
from netspec.layers.pooling import AdaptiveAvgPool2d, _AvgPool, _MaxPool, _WindowPool
from netspec.layers.recurrent import GRU, LSTM

# Keras layers that take the activation shorthand as their own `activation=` argument; after any
# other, it is a layer of its own
FUSED_ACTIVATION: tuple[type[Layer], ...] = (_ConvNd, Linear)


@dataclass
class Lowering:
    """What one spec layer becomes: the Keras layers called before its own, the values its macro
    takes (``padding``, ...), and the helper layers and Permute it uses."""

    # how the Keras name of a helper layer with a suffix ("_pad") is written: a string literal at the
    # top level, an f-string of the scope inside a module's builder function
    name: Callable[[str], str]
    before: list[str] = field(default_factory=list)
    macro_values: dict = field(default_factory=lambda: {"padding": "valid"})
    helpers: set[str] = field(default_factory=set)
    # the channels-first layout a Permute restores before a Flatten ("C, H, W"), so features keep PyTorch's order
    permutes: str | None = None
    zero_padding: str | None = None  # the step of ``before`` that pads with zeros, if one does

    def without_zero_padding(self) -> tuple:
        """What it lowers to besides its zero padding, to compare with another use's."""
        return ([step for step in self.before if step != self.zero_padding], self.macro_values, self.helpers,
                self.permutes)

    def pad(self, cl: CheckedLayer, pads) -> None:
        """Explicit per-side padding, (before, after) per spatial axis, as a layer of its own (-inf
        before max pooling): ZeroPadding2D(((top, bottom), (left, right))), ZeroPadding1D((before, after))."""
        if not pads or not any(pads):
            return
        rank = len(pads) // 2
        axes = tuple(tuple(pads[i:i + 2]) for i in range(0, len(pads), 2))
        amount = py(axes[0] if rank == 1 else axes)
        if cl.layer.pad_value == float("-inf"):
            self.before.append(f"NegInfPadding{rank}D({amount}, name={self.name('_pad')})")
            self.helpers.add(f"NegInfPadding{rank}D")
        else:
            self.zero_padding = f"keras.layers.ZeroPadding{rank}D({amount}, name={self.name('_pad')})"
            self.before.append(self.zero_padding)


Naming = Callable[[str], str]
_LOWERINGS: dict[type[Layer], Callable[[CheckedLayer, Naming], Lowering]] = {}


def lowers(layer_class: type[Layer]):
    def register(function: Callable[[CheckedLayer, Naming], Lowering]):
        _LOWERINGS[layer_class] = function
        return function
    return register


def lower(cl: CheckedLayer, name: Naming | None = None) -> Lowering:
    """The layer's lowering: its class's, or the nearest base class's (one for pooling of any rank).
    ``name`` writes the Keras name of one of its helper layers (default: the layer's name and the
    suffix, as a string literal)."""
    registered = next((_LOWERINGS[c] for c in type(cl.layer).__mro__ if c in _LOWERINGS), _padded)
    return registered(cl, name or (lambda suffix: py(cl.name + suffix)))


def _padded(cl: CheckedLayer, name: Naming) -> Lowering:
    """The shared rule: TensorFlow's 'same' as padding="same", any other padding explicit."""
    lowering = Lowering(name)
    if getattr(cl.layer, "padding", None) == "same":
        lowering.macro_values["padding"] = "same"
    else:
        lowering.pad(cl, cl.resolved.get("padding"))
    return lowering


def unsupported(cl: CheckedLayer, why: str, hint: str) -> SpecError:
    return SpecError([Problem(f"the keras backend cannot render this layer: {why}", cl.location,
                              layer=cl.name, hint=hint)])


@lowers(_ConvNd)
def _convolution(cl: CheckedLayer, name: Naming) -> Lowering:
    assert isinstance(cl.layer, _ConvNd)  # as registered
    lowering = _padded(cl, name)
    if cl.layer.depthwise(cl.resolved["in_channels"]):  # Keras' own layer, and its kernel layout
        lowering.macro_values["depthwise"] = True
    return lowering


@lowers(ConvTranspose2d)
def _transposed_convolution(cl: CheckedLayer, name: Naming) -> Lowering:
    """Keras crops a transposed convolution's output only as TensorFlow's 'same' does: by
    (kernel - stride) / 2 on each side, with no output padding; without padding it adds the output
    padding as PyTorch does, after the last row and column."""
    assert isinstance(cl.layer, ConvTranspose2d)  # as registered
    layer, lowering = cl.layer, Lowering(name)
    if layer.padding == (0, 0):
        return lowering
    same = tuple((kernel - stride) // 2 if (kernel - stride) % 2 == 0 and kernel >= stride else None
                 for kernel, stride in zip(layer.kernel_size, layer.stride, strict=True))
    if layer.output_padding == (0, 0) and layer.padding == same:
        lowering.macro_values["padding"] = "same"
        return lowering
    hint = "use padding 0 (with any output_padding)"
    if None not in same:
        hint += f", or padding {list(same)} with no output_padding (Keras' 'same')"
    raise unsupported(cl, f"a transposed convolution's padding {list(layer.padding)} with output_padding "
                          f"{list(layer.output_padding)}", hint)


@lowers(_AvgPool)
def _average_pool(cl: CheckedLayer, name: Naming) -> Lowering:
    assert isinstance(cl.layer, _AvgPool)  # as registered
    pads = cl.resolved["padding"]
    if any(pads) and not cl.layer.count_include_pad and _is_tf_same(cl):
        lowering = Lowering(name)
        lowering.macro_values["padding"] = "same"  # TensorFlow's 'same' also leaves the padding out of each average
        return lowering
    if cl.layer.ceil_mode or (any(pads) and not cl.layer.count_include_pad):
        raise unsupported(cl, "average pooling with ceil_mode, or padding left out of the average",
                          "use ceil_mode: false and count_include_pad: true (or no padding)")
    return _padded(cl, name)


@lowers(_MaxPool)
def _max_pool(cl: CheckedLayer, name: Naming) -> Lowering:
    assert isinstance(cl.layer, _MaxPool)  # as registered
    if not cl.layer.ceil_mode:
        return _padded(cl, name)
    # Keras has no ceil_mode: extra padding (-inf) after each axis makes floor mode take the last window
    pads = list(cl.resolved["padding"])
    for axis, extra in enumerate(_ceil_extra(cl)):
        pads[2 * axis + 1] += extra
    lowering = Lowering(name)
    lowering.pad(cl, tuple(pads))
    return lowering


@lowers(AdaptiveAvgPool2d)
def _adaptive_pool(cl: CheckedLayer, name: Naming) -> Lowering:
    lowering = Lowering(name)
    if _keras_adaptive_pool_fails(cl):
        lowering.macro_values["exact_adaptive"] = True
        lowering.helpers.add("AdaptiveAvgPool2D")
    return lowering


def _helper_layer(helper: str) -> Callable[[CheckedLayer, Naming], Lowering]:
    """The lowering of a layer that is one helper layer of the generated module (what Keras lacks)."""
    def lowering(cl: CheckedLayer, name: Naming) -> Lowering:
        result = Lowering(name)
        result.helpers.add(helper)
        return result
    return lowering


for _layer_class, _helper in ((LocalResponseNorm, "LocalResponseNorm"), (Select, "SelectToken"),
                              (Chunk, "Chunk"), (ChannelShuffle, "ChannelShuffle"),
                              (MultiheadAttention, "MultiHeadSelfAttention"), (LayerScale, "LayerScale"),
                              (ClassToken, "ClassToken"), (PositionEmbedding, "PositionEmbedding"),
                              (PatchMerge, "PatchMerge"), (WindowAttention, "ShiftedWindowAttention"),
                              (LSTM, "TorchLSTM"), (GRU, "TorchGRU"), (Partition, "Partition"),
                              (Departition, "Departition"), (RelativeAttention, "RelativePositionalAttention")):
    lowers(_layer_class)(_helper_layer(_helper))


@lowers(Flatten)
def _flatten(cl: CheckedLayer, name: Naming) -> Lowering:
    lowering = Lowering(name)
    rank = spatial_rank(cl.input_shape)
    if rank and layout_of(cl.input_shape).channels_first:  # tokens are in one order in both frameworks
        lowering.before.append(f"keras.layers.Permute({py(to_channels_first_axes(rank))}, name={name('_chw')})")
        lowering.permutes = ", ".join(LAYOUTS[rank].split("×"))
    return lowering


def _ceil_extra(cl: CheckedLayer) -> tuple[int, ...]:
    """Extra padding after each spatial axis that makes a floor-mode window reproduce PyTorch's ceil_mode."""
    assert isinstance(cl.layer, _WindowPool)  # called for pooling layers only
    pads = cl.resolved["padding"]
    axes = zip(cl.input_shape[1:], cl.output_shape[1:], cl.layer.kernel_size, cl.resolved["stride"], strict=True)
    return tuple(max((out - 1) * stride + kernel - (size + pads[2 * axis] + pads[2 * axis + 1]), 0)
                 for axis, (size, out, kernel, stride) in enumerate(axes))


def _is_tf_same(cl: CheckedLayer) -> bool:
    assert isinstance(cl.layer, _WindowPool)  # called for pooling layers only
    same = resolve_padding("same", cl.input_shape[1:], cl.layer.kernel_size, cl.resolved["stride"])
    return not cl.layer.ceil_mode and same == cl.resolved["padding"]


def _keras_adaptive_pool_fails(cl: CheckedLayer) -> bool:
    """Keras' AdaptiveAveragePooling2D pools windows of ceil(in / out) and one more, which graph
    tracing refuses when that exceeds the input (an input or output side of 1)."""
    _, h, w = cl.input_shape
    _, out_h, out_w = cl.output_shape
    return any(-(-size // out) + 1 > size for size, out in ((h, out_h), (w, out_w)))
