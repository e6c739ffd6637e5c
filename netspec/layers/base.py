"""What every layer in the catalogue shares: the schema base class, value types, and the analysis
result the checker collects.

Shapes are channels-first tuples without the batch dimension: ``(C, H, W)`` for images and
``(F,)`` for flat features. Layout conversion (Keras' channels-last) happens only for display and
in the backends.
"""

from __future__ import annotations

import keyword
import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, TypeAlias

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

Shape = tuple[int, ...]

# What `inputs:` calls the network's input.
NETWORK_INPUT = "input"

MAX_NAME_LENGTH = 64
_NAME_RE = re.compile(rf"^[A-Za-z][A-Za-z0-9_]{{0,{MAX_NAME_LENGTH - 1}}}$")

# Names the generated code binds or calls at module level, which a spec's names must not take: a
# layer or block name becomes an attribute of the generated class and a variable of forward() or
# the Keras builder, where it would hide the import or helper that code calls; the spec name
# becomes the torch class (in CamelCase), the Keras builder and the file name. Each backend owns
# its names (its imports and helpers: netspec_torch.names, netspec_keras.names), registered under
# this entry-point group; the builtins the generated code calls are the core's.
RESERVED_NAMES_GROUP = "netspec.reserved_names"
_BUILTINS_CALLED = {name: "a Python builtin" for name in (
    "super", "float", "int", "tuple", "list", "isinstance", "sum", "range", "staticmethod")}


@lru_cache(maxsize=1)
def _backend_names() -> tuple[dict[str, str], dict[str, str]]:
    """Every installed backend's (module-level names, attribute names), each with what it is."""
    module_level: dict[str, str] = {}
    attributes: dict[str, str] = {}
    for entry in sorted(entry_points(group=RESERVED_NAMES_GROUP), key=lambda e: e.name):
        try:
            names = entry.load()
        except ImportError:  # a backend that is not there (left-over metadata) generates no code
            continue
        module_level.update(names.MODULE_NAMES)
        attributes.update(names.ATTRIBUTE_NAMES)
    return module_level, attributes


@lru_cache(maxsize=1)
def generated_code_names() -> dict[str, str]:
    """The names generated code binds at module level, of every backend, with what each is (built
    once: every name of a spec is compared with it)."""
    return {**_BUILTINS_CALLED, **_backend_names()[0]}


def inherited_attribute_names() -> dict[str, str]:
    """The names a generated class inherits (nn.Module's forward, training, ...), with what each is."""
    return _backend_names()[1]


# Packages a generated file or class named after a spec or module would shadow (a spec named
# 'numpy' writes numpy.py next to the user's script). Layers may take these names: the generated
# code never calls them bare (it writes keras.layers), and torchvision names its MNASNet, ViT and
# MaxViT stacks `layers`.
SHADOWED_PACKAGES: dict[str, str] = {
    "layers": "keras.layers", "ops": "keras.ops", "np": "numpy", "numpy": "the numpy package",
    "tensorflow": "the tensorflow package", "jax": "the jax package"}



# A spec's and a module's names become classes (CamelCase: 'alexnet-cifar10' -> AlexnetCifar10),
# Keras builders and file names, so they are compared with these ignoring case and separators:
# 'f' would make `class F`, 'none' `class None`, 'Torch' a torch.py that shadows the torch package.
@lru_cache(maxsize=1)
def _reserved_class_names() -> dict[str, tuple[str, str]]:
    reserved = {word.lower(): (word, "a Python keyword") for word in keyword.kwlist}
    reserved.update({name.lower(): (name, f"{what} in the generated code")
                     for name, what in {**generated_code_names(), **SHADOWED_PACKAGES}.items()})
    return reserved


def class_name_problem(value: str, what: str = "spec") -> str | None:
    """What a spec's or module's name would clash with as a generated class or file, or None."""
    folded = re.sub(r"[^A-Za-z0-9]", "", value).lower()
    if folded in _reserved_class_names():
        word, meaning = _reserved_class_names()[folded]
        return f"'{word}', {meaning} (the class and file named after the {what} ignore case and separators)"
    return None


# The local names of the generated forward() and Keras builder, where a graph's layers become
# variables named after them.
LOCAL_CODE_NAMES = {"self": "the module itself", "x": "the network input", "inputs": "the Keras model's input",
                    NETWORK_INPUT: "what 'inputs:' calls the network input"}


def name_problem(value: str) -> str | None:
    """Why ``value`` cannot name a layer or block in generated code, or None when it can."""
    if value.startswith("_"):
        return (f"{value!r} starts with an underscore, which Python treats specially in a class "
                "(a name like '__fc' is mangled, dunders belong to Python)")
    if keyword.iskeyword(value):
        return f"{value!r} is a Python keyword"
    if value in generated_code_names():
        return f"{value!r} is {generated_code_names()[value]} in the generated code"
    if value in LOCAL_CODE_NAMES:
        return f"{value!r} is {LOCAL_CODE_NAMES[value]} in the generated code"
    if value in inherited_attribute_names():
        return f"{value!r} is {inherited_attribute_names()[value]}"
    return None


# A repetition's name in a module's scope may hold '-' (RegNet's `block1-0`, from `names:`): it is
# a key of an nn.Sequential and a Keras layer name, never a Python name.
REPETITION_NAME = re.compile(rf"^[A-Za-z][A-Za-z0-9_-]{{0,{MAX_NAME_LENGTH - 1}}}$")


def _scope_part_ok(part: str) -> bool:
    return part.isdigit() or "-" in part and bool(REPETITION_NAME.match(part))


def _check_name(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"a name must be text, got {value!r}")
    if "." in value:  # a layer inside a module's scope ("layer1.0.conv1"), named by netspec.language.modules
        head, *rest = value.split(".")
        _check_name(head)
        for part in rest:
            if not _scope_part_ok(part):
                _check_name(part)
        return value
    problem = name_problem(value)
    if problem and value.startswith("_") and value.strip("_") and _NAME_RE.match(value.lstrip("_")):
        raise ValueError(f"{problem}; try '{value.strip('_')}'")
    if problem and not value.startswith("_"):
        raise ValueError(f"{problem} and cannot name a layer; try '{value}_'")
    if not _NAME_RE.match(value):
        raise ValueError(
            f"{value!r} is not a valid name: use letters, digits and underscores, "
            "start with a letter, at most 64 characters")
    return value


Name = Annotated[str, BeforeValidator(_check_name),
                 WithJsonSchema({"type": "string", "pattern": _NAME_RE.pattern})]


def _names(value: Any) -> Any:
    """One name or a list of names (`inputs: conv1` is `inputs: [conv1]`)."""
    return [value] if isinstance(value, str) else value


def _reference(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"a layer reference must be a name, got {value!r}")
    head, *rest = value.split(".")
    if value != NETWORK_INPUT and not (_NAME_RE.match(head) and all(_NAME_RE.match(p) or _scope_part_ok(p)
                                                                       for p in rest)):
        raise ValueError(f"{value!r} is not a layer name (letters, digits and underscores, starting with a letter)")
    return value


Reference = Annotated[str, BeforeValidator(_reference), WithJsonSchema({"type": "string"})]
References = Annotated[list[Reference], BeforeValidator(_names),
                       WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"},
                                                                      "minItems": 1}]})]


def _positive_int(value: Any, what: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{what} must be at least {minimum}, got {value}")
    return value


# The spatial axes of a tensor by its spatial rank, as messages name them, and its channels-first
# layout: the checker's shapes are (C, *spatial) or (F,) for flat features.
AXES: dict[int, tuple[str, ...]] = {1: ("length",), 2: ("height", "width"), 3: ("depth", "height", "width")}
LAYOUTS: dict[int, str] = {0: "F", 1: "C×L", 2: "C×H×W", 3: "C×D×H×W"}
KINDS: dict[int, str] = {0: "flat features", 1: "a sequence", 2: "an image", 3: "a volume"}
# The inputs a network may take (dimensions without the batch): features, a sequence, an image, a volume.
INPUT_RANKS = (1, 2, 3, 4)


@dataclass(frozen=True)
class Layout:
    """How a tensor's axes are ordered (batch left out), and so how each framework holds it.

    The checker's shapes are channels-first (C, *spatial), as PyTorch's convolutions take them,
    and Keras holds the same tensor channels-last; a token sequence (L, D) is channels-last in
    both, as transformers hold it. Each backend derives its order from the layout, never from the
    rank alone: (16, 32) is 16 channels of length 32 as a sequence, 16 tokens of width 32 as tokens.
    """

    name: str  # "C×H×W", "L×D"
    kind: str  # as messages name it: "an image", "a token sequence"
    channels_first: bool

    def keras_shape(self, shape: Shape) -> Shape:
        """The shape in Keras' order: channels last."""
        return (*shape[1:], shape[0]) if self.channels_first and len(shape) > 1 else tuple(shape)


# every channels-first layout, by spatial rank; and token sequences
CHANNELS_FIRST: dict[int, Layout] = {rank: Layout(LAYOUTS[rank], KINDS[rank], True) for rank in LAYOUTS}
TOKENS = Layout("L×D", "a token sequence", channels_first=False)
# integers to look up (a text's characters or words as ids), which only an embedding takes
IDS = Layout("L", "a sequence of token ids", channels_first=False)
# features last in both frameworks, by the rank of the grid of positions: tokens, and an image or a
# volume as ConvNeXt and Swin permute them (N, H, W, C) for their per-position LayerNorm and Linear
CHANNELS_LAST: dict[int, Layout] = {1: TOKENS, 2: Layout("H×W×C", "an image, channels last", False),
                                    3: Layout("D×H×W×C", "a volume, channels last", False)}
# an image's pixels grouped into tokens, as MaxViT partitions it for attention within each group:
# rows × cols groups of P = size² tokens of D features, features last in both frameworks; a
# window's group is size×size neighbouring pixels, a grid's is size×size pixels spread evenly
# over the whole image
PARTITIONS: dict[str, Layout] = {kind: Layout("Gh×Gw×P×D", f"an image's pixels grouped by {kind}", False)
                                 for kind in ("window", "grid")}


class TensorShape(tuple):
    """A shape whose layout is not the channels-first one its rank implies (a token sequence).
    It compares equal to the plain tuple of its sizes; layers that keep their input's shape
    (activations, dropout) keep its layout with it."""

    layout: Layout

    def __new__(cls, sizes, layout: Layout) -> TensorShape:
        shape = super().__new__(cls, sizes)
        shape.layout = layout
        return shape

    def __reduce__(self):
        return TensorShape, (tuple(self), self.layout)


def layout_of(shape: Shape) -> Layout:
    """The shape's layout: its own, or the channels-first one of its rank."""
    return getattr(shape, "layout", None) or CHANNELS_FIRST[spatial_rank(shape)]


def is_tokens(shape: Shape) -> bool:
    return layout_of(shape) is TOKENS


def features_last(shape: Shape) -> bool:
    """Whether the features are the last axis of the tensor in PyTorch as in Keras: a token sequence
    or a channels-last grid, where linear and layernorm act at each position."""
    return not layout_of(shape).channels_first


def with_layout(sizes: Shape, layout: Layout) -> Shape:
    """A shape of ``sizes`` in ``layout``: a plain tuple for the channels-first default of its rank."""
    return tuple(sizes) if layout.channels_first else TensorShape(sizes, layout)


def channels_of(shape: Shape) -> int:
    """The channels (features) of a tensor: the first axis channels-first, the last for features last."""
    return shape[-1] if features_last(shape) else shape[0]


def spatial_rank(shape: Shape) -> int:
    """0 for flat features (F,), 1 for a sequence (C, L), 2 for an image (C, H, W), ..."""
    return len(shape) - 1 if len(shape) > 1 else 0


def channels_last(shape: Shape) -> Shape:
    """The shape in Keras' channels-last order, as its layout says: (C, H, W) -> (H, W, C); a token
    sequence (L, D) as it is."""
    return layout_of(shape).keras_shape(shape)


def to_channels_first_axes(rank: int) -> tuple[int, ...]:
    """The Permute that takes a channels-last tensor of ``rank`` spatial axes (batch left out,
    axes counted from 1, as keras.layers.Permute counts) back to channels-first: (3, 1, 2) for
    an image."""
    return (rank + 1, *range(1, rank + 1))


def _sizes(rank: int, minimum: int):
    axes = AXES[rank]
    what = "a pair [height, width]" if rank == 2 else f"[{', '.join(axes)}]"

    def validate(value: Any) -> tuple[int, ...]:
        if isinstance(value, (list, tuple)):
            if len(value) != rank:
                raise ValueError(f"expected one integer or {what}, got {len(value)} values")
            return tuple(_positive_int(v, axis, minimum) for v, axis in zip(value, axes, strict=True))
        v = _positive_int(value, "the value", minimum)
        return (v,) * rank
    return validate


def _sizes_schema(rank: int, minimum: int) -> dict:
    item = {"type": "integer", "minimum": minimum}
    return {"anyOf": [item, {"type": "array", "items": item, "minItems": rank, "maxItems": rank}]}


def sizes(rank: int, minimum: int = 1) -> Any:
    """An int, or one per spatial axis ([height, width] for an image), stored as a tuple of ``rank``."""
    return Annotated[tuple[int, ...], BeforeValidator(_sizes(rank, minimum)),
                     WithJsonSchema(_sizes_schema(rank, minimum))]


def padding_sizes(rank: int) -> Any:
    """Padding: an int, one per spatial axis, 'valid', or TensorFlow-style 'same'."""
    per_axis = _sizes(rank, 0)

    def validate(value: Any) -> tuple[int, ...] | str:
        if isinstance(value, str):
            if value in ("valid", "same"):
                return value
            raise ValueError(f"padding must be an integer, {'a pair' if rank == 2 else 'a list'}, 'valid' or "
                             f"'same', got {value!r}")
        return per_axis(value)

    return Annotated[tuple[int, ...] | Literal["valid", "same"], BeforeValidator(validate),
                     WithJsonSchema({"anyOf": [_sizes_schema(rank, 0), {"enum": ["valid", "same"]}]})]


if TYPE_CHECKING:  # what the type checker sees; pydantic validates with the annotated types below
    Length: TypeAlias = tuple[int, ...]
    Pair: TypeAlias = tuple[int, ...]
    NonNegativePair: TypeAlias = tuple[int, ...]
    LengthPadding: TypeAlias = tuple[int, ...] | str
    Padding: TypeAlias = tuple[int, ...] | str
    Triple: TypeAlias = tuple[int, ...]
    TriplePadding: TypeAlias = tuple[int, ...] | str
else:
    Length = sizes(1)  # an int or [length], stored as (length,)
    Pair = sizes(2)  # an int or [height, width], stored as a pair
    Triple = sizes(3)  # an int or [depth, height, width]
    NonNegativePair = sizes(2, 0)
    LengthPadding, Padding, TriplePadding = padding_sizes(1), padding_sizes(2), padding_sizes(3)


@dataclass(frozen=True)
class WeightTensor:
    """One tensor a layer owns, and how it is stored in each framework.

    The neutral layout is PyTorch's: ``torch`` is its state-dict key, ``keras`` the Keras
    variable's name; ``to_keras`` permutes the PyTorch array's axes into Keras' layout (conv OIHW
    -> HWIO is (2, 3, 1, 0)), and ``reshape`` (the PyTorch shape, the Keras shape) then splits or
    joins axes, where Keras keeps a tensor with other axes (a multi-head projection PyTorch stores
    as (heads·head_dim, D) and Keras as (D, heads, head_dim)): a layer whose shapes depend on its
    values returns such tensors from ``weight_tensors(resolved)``. ``needs`` names the boolean
    field that must be on for the tensor to exist (a conv's bias); ``trained`` is False for
    running statistics.
    """

    torch: str
    keras: str
    to_keras: tuple[int, ...] | None = None
    needs: str | None = None
    trained: bool = True
    reshape: tuple[tuple[int, ...], tuple[int, ...]] | None = None

    def __post_init__(self) -> None:
        if self.reshape is not None:
            torch_shape, keras_shape = self.reshape
            if math.prod(torch_shape) != math.prod(keras_shape):
                raise ValueError(f"{self.torch}: {torch_shape} cannot be reshaped to {keras_shape}")
            if self.to_keras is not None and len(self.to_keras) != len(torch_shape):
                raise ValueError(f"{self.torch}: the permutation {self.to_keras} is not of {torch_shape}")

    @property
    def to_torch(self) -> tuple[int, ...] | None:
        """The inverse permutation: Keras' layout back to PyTorch's."""
        if self.to_keras is None:
            return None
        return tuple(sorted(range(len(self.to_keras)), key=self.to_keras.__getitem__))

    def keras_array(self, value):
        """A PyTorch-layout numpy array in Keras' layout: permuted, then reshaped."""
        if self.to_keras is not None:
            value = value.transpose(self.to_keras)
        if self.reshape is not None:
            value = value.reshape(self.reshape[1])
        return value

    def torch_array(self, value):
        """A Keras-layout numpy array in PyTorch's layout: the reshape undone, then the permutation."""
        if self.reshape is not None:
            torch_shape = self.reshape[0]
            value = value.reshape(tuple(torch_shape[axis] for axis in self.to_keras) if self.to_keras else torch_shape)
        if self.to_torch is not None:
            value = value.transpose(self.to_torch)
        return value


class ShapeIssue(Exception):
    """A layer cannot take its input. ``field`` names the offending key for the error location.

    ``fatal`` issues stop shape propagation (the output is unknown); the others are reported and
    checking continues with the layer's declared output.
    """

    def __init__(self, message: str, *, field: str | None = None, hint: str | None = None, fatal: bool = True):
        super().__init__(message)
        self.message = message
        self.field = field
        self.hint = hint
        self.fatal = fatal


@dataclass(frozen=True)
class Window:
    """A sliding window, for receptive-field arithmetic: each output value reads ``kernel`` input
    values (``dilation`` apart) per axis; neighbouring outputs are ``stride`` inputs apart, or
    1 / ``upsample`` of one when the layer enlarges its input (a transposed convolution, upsampling)."""

    kernel: tuple[int, ...]  # per spatial axis
    stride: tuple[int, ...]
    dilation: tuple[int, ...] = ()  # () for 1 along every axis
    upsample: tuple[int, ...] = ()  # () for 1 along every axis

    def __post_init__(self) -> None:
        if not self.dilation:
            object.__setattr__(self, "dilation", (1,) * len(self.kernel))
        if not self.upsample:
            object.__setattr__(self, "upsample", (1,) * len(self.kernel))


@dataclass
class Analysis:
    """What a layer does to its input: the checker's per-layer facts.

    ``resolved`` holds values the spec may leave implicit (inferred ``in_channels``, explicit
    per-side padding for 'same'), so backends never redo shape arithmetic.
    """

    output: Shape
    params: int = 0
    non_trainable: int = 0
    macs: int = 0
    window: Window | None = None
    flattens: bool = False
    sees_whole_input: bool = False  # global pooling: every output value depends on every pixel
    # values a layer keeps besides its output, per example, for the backward pass: attention maps
    kept_elements: int = 0
    resolved: dict[str, Any] = field(default_factory=dict)
    issues: list[ShapeIssue] = field(default_factory=list)


@dataclass(frozen=True)
class LayerInput:
    """The tensor a layer receives and who produced it (for error messages)."""

    shape: Shape
    producer: str  # "layer 'pool5' (line 40)" or "the input"
    flat_input: bool = False  # flat features that come from a 1-D network input, not from a flatten


LAYER_REGISTRY: dict[str, type[Layer]] = {}


class Layer(BaseModel):
    """Base of every catalogue entry. Subclasses declare ``type: Literal['...']`` and implement
    :meth:`analyze`; defining the subclass registers it."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    name: Name = Field(description="Unique layer name; becomes the attribute name in generated code.")
    inputs: References | None = Field(
        None, min_length=1, description="The earlier layers (or 'input', the network's input) whose outputs this "
        "layer takes; by default the previous layer's.")

    # Layers listed under the same category show up together in docs and tests.
    category: ClassVar[str] = "misc"
    # Keys users bring from other frameworks, mapped to ours, for did-you-mean hints.
    synonyms: ClassVar[dict[str, str]] = {}
    # What other frameworks call this type ('dense' for linear), for did-you-mean hints.
    type_synonyms: ClassVar[tuple[str, ...]] = ()
    # What the training loop and the backends' fast paths ask of a layer, so that none of them
    # dispatches on type names: the output is probabilities (the loss then takes their log);
    # it normalizes with the batch's statistics in training; it is random in training; it
    # flattens an image into features.
    outputs_probabilities: ClassVar[bool] = False
    batch_statistics: ClassVar[bool] = False
    random_in_training: ClassVar[bool] = False
    flattens: ClassVar[bool] = False
    # Sample configurations with an input shape (channels-first): the catalogue tests and the
    # backends' conformance tests build and run each one.
    examples: ClassVar[tuple[tuple[Shape | tuple[Shape, ...], dict[str, Any]], ...]] = ()
    # The tensors the layer owns, in both frameworks' order (weights.py moves them between layouts).
    weights: ClassVar[tuple[WeightTensor, ...]] = ()
    # PyTorch buffers without a Keras twin, which may come along in a state dict and are dropped.
    torch_only_buffers: ClassVar[tuple[str, ...]] = ()
    # The layer is one learned tensor applied by an expression (ViT's class token, ConvNeXt's
    # layer_scale): its state-dict key is the layer's own path, and PyTorch keeps it as a parameter
    # of the module around it, as torchvision does.
    learned_tensor: ClassVar[bool] = False
    # Whether a chain of modules (nn.Sequential, a sequential module) can hold it as a module of its
    # own applied to one input: not a learned tensor, attention (called on query, key and value)
    # or a chunk (an index into its input).
    chains_as_module: ClassVar[bool] = True
    # Whether it takes token ids (integers to look up, L): an embedding; every other layer computes
    # with values, and is refused token ids at its line.
    takes_ids: ClassVar[bool] = False
    # Text fields the generated code only passes on as a value (partition's 'by'): a module's uses
    # that differ in one share a class or function that takes it as an argument. Other text (an
    # activation, a pooling mode) decides what the code writes, and uses that differ get one each.
    value_fields: ClassVar[tuple[str, ...]] = ()
    # The value padding takes: -inf for max pooling, so that the border never wins.
    pad_value: ClassVar[float] = 0.0
    # How many inputs the layer takes: (at least, at most or None for any number).
    arity: ClassVar[tuple[int, int | None]] = (1, 1)
    # The resolved values that are the channels (or features) the layer receives: where a module is
    # generated as a class, they are written as the channels coming in (nn.BatchNorm2d(planes)).
    input_channel_keys: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        type_field = cls.model_fields.get("type")
        if type_field is not None and type_field.annotation is not None:
            args: tuple[Any, ...] = getattr(type_field.annotation, "__args__", ())
            if len(args) == 1 and isinstance(args[0], str):
                LAYER_REGISTRY[args[0]] = cls

    @property
    def kind(self) -> str:
        return self.type  # type: ignore[attr-defined]

    def weight_tensors(self, resolved: dict[str, Any] | None = None) -> tuple[WeightTensor, ...]:
        """The tensors this layer really has: no bias when ``bias`` is off, and so on; ``resolved``
        (the checker's values) where the layout depends on them (a depthwise convolution)."""
        return tuple(w for w in self.weights if w.needs is None or getattr(self, w.needs))

    def torch_buffer_elements(self, resolved: dict[str, Any]) -> int:
        """How many values its torch_only_buffers hold (int64), which a PyTorch weights file
        carries besides the parameters and statistics."""
        return 0

    def analyze(self, inp: LayerInput) -> Analysis:
        raise NotImplementedError

    def analyze_inputs(self, inputs: list[LayerInput]) -> Analysis:
        """What the layer does to its inputs; merge layers override this, the others take one."""
        return self.analyze(inputs[0])


# --- shared arithmetic --------------------------------------------------------------------------

def fmt_shape(shape: Shape) -> str:
    return "×".join(str(d) for d in shape)


def require_tokens(inp: LayerInput, does: str) -> None:
    """A ShapeIssue unless the layer's input is a token sequence; ``does`` says what the layer does
    ("class_token acts on")."""
    if not is_tokens(inp.shape):
        raise ShapeIssue(f"{does} a token sequence (L×D), but {inp.producer} yields {layout_of(inp.shape).kind} "
                         f"{fmt_shape(inp.shape)}", hint="make tokens first: {type: to_tokens}")


def require_channels_last_image(inp: LayerInput, does: str) -> tuple[int, int, int]:
    """(height, width, channels) of a channels-last image, as Swin's layers take it; otherwise a
    ShapeIssue (``does``: "window_attention attends within windows of"), with the permute that
    makes one from a channels-first image."""
    layout = layout_of(inp.shape)
    if layout is not CHANNELS_LAST[2]:
        hint = ("move the channels last first: {type: permute, dims: [0, 2, 3, 1]}" if layout is CHANNELS_FIRST[2]
                else None)
        raise ShapeIssue(f"{does} {CHANNELS_LAST[2].kind} ({CHANNELS_LAST[2].name}), but {inp.producer} yields "
                         f"{layout.kind} ({layout.name} {fmt_shape(inp.shape)})", hint=hint)
    height, width, channels = inp.shape
    return height, width, channels


def partition_of(shape: Shape) -> str | None:
    """How a tensor's pixels are grouped ('window' or 'grid'), or None for a tensor not partitioned."""
    return next((kind for kind, layout in PARTITIONS.items() if layout_of(shape) is layout), None)


def require_partitioned(inp: LayerInput, does: str) -> tuple[str, int, int, int, int]:
    """(by, rows, cols, size, features) of an image partitioned into groups of size×size tokens;
    otherwise a ShapeIssue (``does``: "relative_attention attends within the groups of")."""
    kind = partition_of(inp.shape)
    if kind is None:
        layout = layout_of(inp.shape)
        raise ShapeIssue(f"{does} an image partitioned into groups of pixels ({PARTITIONS['window'].name}), but "
                         f"{inp.producer} yields {layout.kind} ({layout.name} {fmt_shape(inp.shape)})",
                         hint="partition a channels-first image first: {type: partition, by: window, size: 7}")
    rows, cols, tokens, features = inp.shape
    return kind, rows, cols, math.isqrt(tokens), features


def refuse_token_ids(layer: Layer, inputs: list[LayerInput]) -> None:
    """A ShapeIssue when token ids reach a layer that computes with values, not an embedding."""
    if layer.takes_ids:
        return
    for inp in inputs:
        if layout_of(inp.shape) is IDS:
            raise ShapeIssue(f"{layer.kind} computes with values, and {inp.producer} yields {IDS.kind} "
                             f"({IDS.name} {fmt_shape(inp.shape)}), integers to look up",
                             hint="embed them first: {type: embedding, num_embeddings: VOCABULARY, embedding_dim: D}")


def require_spatial(inp: LayerInput, what: str, rank: int = 2) -> tuple[int, tuple[int, ...]]:
    """The channels and spatial sizes of a layer's input, which must have ``rank`` spatial axes
    (2: an image, C×H×W); otherwise a ShapeIssue that says what it got and what to do."""
    layout = layout_of(inp.shape)
    if is_tokens(inp.shape):
        raise ShapeIssue(f"{what} needs {KINDS[rank]} (channels first, {LAYOUTS[rank]}) but {inp.producer} yields "
                         f"{TOKENS.kind} ({TOKENS.name} {fmt_shape(inp.shape)})",
                         hint="token sequences take per-token layers (linear, layernorm, activations, dropout), "
                              "attention, add, concat, multiply and flatten; or is the input a sequence, channels "
                              "first? then write input: [C, L] without 'layout: tokens'")
    if partition_of(inp.shape):
        raise ShapeIssue(f"{what} needs {KINDS[rank]} (channels first, {LAYOUTS[rank]}) but {inp.producer} yields "
                         f"{layout.kind} ({layout.name} {fmt_shape(inp.shape)})",
                         hint="put the pixels back in place first: {type: departition}")
    if not layout.channels_first:
        back = [0, len(inp.shape), *range(1, len(inp.shape))]
        raise ShapeIssue(f"{what} needs {KINDS[rank]} (channels first, {LAYOUTS[rank]}) but {inp.producer} yields "
                         f"{layout.kind} ({layout.name} {fmt_shape(inp.shape)})",
                         hint=f"move the channels first before it: {{type: permute, dims: {back}}}")
    if spatial_rank(inp.shape) == rank and len(inp.shape) > 1:
        return inp.shape[0], tuple(inp.shape[1:])
    wanted = f"{KINDS[rank]}-shaped input ({'×'.join(('channels', *AXES[rank]))})"
    got = spatial_rank(inp.shape)
    example = {1: "input: [8, 128] in the spec, or --input 8x128",
               2: "input: [3, 224, 224] in the spec, or --input 3x224x224"}.get(rank, f"input: [{LAYOUTS[rank]}]")
    given = f"{KINDS[rank].split(' ', 1)[-1]}s are given as {LAYOUTS[rank]}: {example}"
    if got == 0 and inp.flat_input:
        if inp.producer == "the input":
            raise ShapeIssue(f"{what} needs {wanted} but the input is 1-D ({fmt_shape(inp.shape)} features)",
                             hint=given)
        raise ShapeIssue(f"{what} needs {wanted} but {inp.producer} yields flat features "
                         f"{fmt_shape(inp.shape)}, as the input is 1-D", hint=f"{given}; or remove this layer")
    if got == 0:
        raise ShapeIssue(f"{what} needs {wanted} but {inp.producer} yields flat features "
                         f"{fmt_shape(inp.shape)}", hint="move this layer before the flatten, or remove it")
    # the catalogue's layers of that rank, as their classes say (rank, or spatial_ranks for batch norm)
    for_rank = [kind for kind, cls in LAYER_REGISTRY.items()
                if getattr(cls, "rank", None) == got or got in getattr(cls, "spatial_ranks", ())]
    hint = (f"the layers for {KINDS[got]} are {', '.join(for_rank)}" if got and for_rank
            else f"give this layer {KINDS[rank]}")
    source = "the input is" if inp.producer == "the input" else f"{inp.producer} yields"
    raise ShapeIssue(f"{what} needs {wanted} but {source} {KINDS[got]} ({LAYOUTS[got]} {fmt_shape(inp.shape)})",
                     hint=hint)


def same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow's 'same': out = ceil(in / stride); the total padding
    max((out - 1)·stride + (kernel - 1)·dilation + 1 - in, 0) is split with the extra pixel
    after (bottom/right)."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def resolve_padding(padding: tuple[int, ...] | str, spatial: tuple[int, ...], kernel: tuple[int, ...],
                    stride: tuple[int, ...], dilation: tuple[int, ...] | None = None) -> tuple[int, ...]:
    """Per-side padding, (before, after) for each spatial axis in turn ((top, bottom, left, right)
    for an image), for an int/tuple, 'valid' or 'same' spec value."""
    dilation = dilation or (1,) * len(spatial)
    if padding == "valid":
        return (0, 0) * len(spatial)
    if padding == "same":
        return tuple(side for axis in zip(spatial, kernel, stride, dilation, strict=True)
                     for side in same_padding(*axis))
    assert not isinstance(padding, str), padding  # the spec allows no other word
    return tuple(side for amount in padding for side in (amount, amount))


def window_output(size: int, kernel: int, stride: int, pad_before: int, pad_after: int,
                  dilation: int = 1, ceil_mode: bool = False) -> int:
    """Output length of a sliding window:
    floor((in + pad_before + pad_after - dilation·(kernel - 1) - 1) / stride) + 1.

    With ``ceil_mode`` (PyTorch pooling) the division rounds up, but the last window must start
    inside the input or the leading padding. Returns 0 or less when the window does not fit.
    """
    span = size + pad_before + pad_after - dilation * (kernel - 1) - 1
    if span < 0:
        return 0
    if not ceil_mode:
        return span // stride + 1
    out = -(-span // stride) + 1
    if (out - 1) * stride >= size + pad_before:
        out -= 1
    return out


def spatial_output(inp: LayerInput, spatial: tuple[int, ...], kernel: tuple[int, ...], stride: tuple[int, ...],
                   pads: tuple[int, ...], dilation: tuple[int, ...] | None = None,
                   ceil_mode: bool = False) -> tuple[int, ...]:
    """Output sizes of a window layer along each spatial axis, or a ShapeIssue explaining why the
    window does not fit."""
    dilation = dilation or (1,) * len(spatial)
    out = tuple(window_output(size, k, s, pads[2 * axis], pads[2 * axis + 1], d, ceil_mode)
                for axis, (size, k, s, d) in enumerate(zip(spatial, kernel, stride, dilation, strict=True)))
    if min(out) >= 1:
        return out
    extent = tuple((k - 1) * d + 1 for k, d in zip(kernel, dilation, strict=True))
    padded = tuple(size + pads[2 * axis] + pads[2 * axis + 1] for axis, size in enumerate(spatial))
    dilated = f" (dilated to {fmt_shape(extent)})" if any(d != 1 for d in dilation) else ""
    if inp.producer == "the input":
        hint = f"use a kernel of at most {fmt_shape(padded)}, more padding, or a larger --input"
    else:
        what = "image" if len(spatial) == 2 else KINDS[len(spatial)].split(" ", 1)[-1]
        hint = (f"the layers before this one shrink the {what} too much: use a larger input, "
                "more padding, or fewer strided/pooling layers")
    raise ShapeIssue(
        f"kernel {fmt_shape(kernel)}{dilated} does not fit the {fmt_shape(padded)} input "
        f"(from {inp.producer}, after padding), so the output would be empty",
        field="kernel_size", hint=hint)
