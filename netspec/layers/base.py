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
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

Shape = tuple[int, ...]

# What `inputs:` calls the network's input.
NETWORK_INPUT = "input"

MAX_NAME_LENGTH = 64
_NAME_RE = re.compile(rf"^[A-Za-z][A-Za-z0-9_]{{0,{MAX_NAME_LENGTH - 1}}}$")

# Names the generated code of either backend binds or calls at module level, which a spec's names
# must not take: a layer or block name becomes an attribute of the generated class and a variable
# of forward() or the Keras builder, where it would hide the import or helper that code calls; the
# spec name becomes the torch class (in CamelCase), the Keras builder and the file name. Imports,
# the helper layers the Keras module defines and the builtins the generated code calls.
GENERATED_CODE_NAMES: dict[str, str] = {
    "torch": "the torch package", "F": "torch.nn.functional", "nn": "torch.nn",
    "OrderedDict": "collections.OrderedDict", "keras": "the keras package",
    "LocalResponseNorm": "a helper layer of the Keras code", "NegInfPadding2D": "a helper layer of the Keras code",
    "AdaptiveAvgPool2D": "a helper layer of the Keras code",
    **{name: "a Python builtin" for name in (
        "super", "float", "int", "tuple", "list", "isinstance", "sum", "range", "staticmethod")},
}

# Packages a generated file or class named after a spec or module would shadow (a spec named
# 'numpy' writes numpy.py next to the user's script). Layers may take these names: the generated
# code never calls them bare (it writes keras.layers), and torchvision names its MNASNet, ViT and
# MaxViT stacks `layers`.
SHADOWED_PACKAGES: dict[str, str] = {
    "layers": "keras.layers", "ops": "keras.ops", "np": "numpy", "numpy": "the numpy package",
    "tensorflow": "the tensorflow package", "jax": "the jax package"}


# The public attributes of torch.nn.Module, which the generated torch class inherits: a layer or
# block named 'forward' or 'training' would replace them (tests compare this with the installed torch).
TORCH_MODULE_ATTRIBUTES = frozenset({
    "T_destination", "add_module", "apply", "bfloat16", "buffers", "call_super_init", "children", "compile", "cpu",
    "cuda", "double", "dump_patches", "eval", "extra_repr", "float", "forward", "get_buffer", "get_extra_state",
    "get_parameter", "get_submodule", "half", "ipu", "load_state_dict", "modules", "mtia", "named_buffers",
    "named_children", "named_modules", "named_parameters", "parameters", "register_backward_hook",
    "register_buffer", "register_forward_hook", "register_forward_pre_hook", "register_full_backward_hook",
    "register_full_backward_pre_hook", "register_load_state_dict_post_hook", "register_load_state_dict_pre_hook",
    "register_module", "register_parameter", "register_state_dict_post_hook", "register_state_dict_pre_hook",
    "requires_grad_", "set_extra_state", "set_submodule", "share_memory", "state_dict", "to", "to_empty", "train",
    "training", "type", "xpu", "zero_grad"})

# A spec's and a module's names become classes (CamelCase: 'alexnet-cifar10' -> AlexnetCifar10),
# Keras builders and file names, so they are compared with these ignoring case and separators:
# 'f' would make `class F`, 'none' `class None`, 'Torch' a torch.py that shadows the torch package.
_RESERVED_CLASS_NAMES = {word.lower(): (word, "a Python keyword") for word in keyword.kwlist}
_RESERVED_CLASS_NAMES.update({name.lower(): (name, f"{what} in the generated code")
                              for name, what in {**GENERATED_CODE_NAMES, **SHADOWED_PACKAGES}.items()})


def class_name_problem(value: str, what: str = "spec") -> str | None:
    """What a spec's or module's name would clash with as a generated class or file, or None."""
    folded = re.sub(r"[^A-Za-z0-9]", "", value).lower()
    if folded in _RESERVED_CLASS_NAMES:
        word, meaning = _RESERVED_CLASS_NAMES[folded]
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
    if value in GENERATED_CODE_NAMES:
        return f"{value!r} is {GENERATED_CODE_NAMES[value]} in the generated code"
    if value in LOCAL_CODE_NAMES:
        return f"{value!r} is {LOCAL_CODE_NAMES[value]} in the generated code"
    if value in TORCH_MODULE_ATTRIBUTES:
        return f"{value!r} is an attribute the generated torch class inherits from torch.nn.Module"
    return None


# A repetition's name in a module's scope may hold '-' (RegNet's `block1-0`, from `names:`): it is
# a key of an nn.Sequential and a Keras layer name, never a Python name.
REPETITION_NAME = re.compile(rf"^[A-Za-z][A-Za-z0-9_-]{{0,{MAX_NAME_LENGTH - 1}}}$")


def _scope_part_ok(part: str) -> bool:
    return part.isdigit() or "-" in part and bool(REPETITION_NAME.match(part))


def _check_name(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"a name must be text, got {value!r}")
    if "." in value:  # a layer inside a module's scope ("layer1.0.conv1"), named by netspec.modules
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


def _pair(minimum: int):
    def validate(value: Any) -> tuple[int, int]:
        if isinstance(value, (list, tuple)):
            if len(value) != 2:
                raise ValueError(f"expected one integer or a pair [height, width], got {len(value)} values")
            return (_positive_int(value[0], "height", minimum), _positive_int(value[1], "width", minimum))
        v = _positive_int(value, "the value", minimum)
        return (v, v)
    return validate


def _pair_schema(minimum: int) -> dict:
    item = {"type": "integer", "minimum": minimum}
    return {"anyOf": [item, {"type": "array", "items": item, "minItems": 2, "maxItems": 2}]}


# An int or [height, width], stored as a pair.
Pair = Annotated[tuple[int, int], BeforeValidator(_pair(1)), WithJsonSchema(_pair_schema(1))]
NonNegativePair = Annotated[tuple[int, int], BeforeValidator(_pair(0)), WithJsonSchema(_pair_schema(0))]


def _padding(value: Any) -> tuple[int, int] | str:
    if isinstance(value, str):
        if value in ("valid", "same"):
            return value
        raise ValueError(f"padding must be an integer, a pair, 'valid' or 'same', got {value!r}")
    return _pair(0)(value)


Padding = Annotated[
    tuple[int, int] | Literal["valid", "same"],
    BeforeValidator(_padding),
    WithJsonSchema({"anyOf": [_pair_schema(0), {"enum": ["valid", "same"]}]}),
]



@dataclass(frozen=True)
class WeightTensor:
    """One tensor a layer owns, and how it is stored in each framework.

    The neutral layout is PyTorch's: ``torch`` is its state-dict key, ``keras`` the Keras
    variable's name; ``to_keras`` permutes the PyTorch array's axes into Keras' layout (conv OIHW
    -> HWIO is (2, 3, 1, 0)). ``needs`` names the boolean field that must be on for the tensor to
    exist (a conv's bias); ``trained`` is False for running statistics.
    """

    torch: str
    keras: str
    to_keras: tuple[int, ...] | None = None
    needs: str | None = None
    trained: bool = True

    @property
    def to_torch(self) -> tuple[int, ...] | None:
        """The inverse permutation: Keras' layout back to PyTorch's."""
        if self.to_keras is None:
            return None
        return tuple(sorted(range(len(self.to_keras)), key=self.to_keras.__getitem__))


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
    """A sliding window, for receptive-field arithmetic."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    dilation: tuple[int, int] = (1, 1)


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
    # The value padding takes: -inf for max pooling, so that the border never wins.
    pad_value: ClassVar[float] = 0.0
    # How many inputs the layer takes: (at least, at most or None for any number).
    arity: ClassVar[tuple[int, int | None]] = (1, 1)

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

    def weight_tensors(self) -> tuple[WeightTensor, ...]:
        """The tensors this layer really has: no bias when ``bias`` is off, and so on."""
        return tuple(w for w in self.weights if w.needs is None or getattr(self, w.needs))

    def analyze(self, inp: LayerInput) -> Analysis:
        raise NotImplementedError

    def analyze_inputs(self, inputs: list[LayerInput]) -> Analysis:
        """What the layer does to its inputs; merge layers override this, the others take one."""
        return self.analyze(inputs[0])


# --- shared arithmetic --------------------------------------------------------------------------

def fmt_shape(shape: Shape) -> str:
    return "×".join(str(d) for d in shape)


def require_spatial(inp: LayerInput, what: str) -> tuple[int, int, int]:
    if len(inp.shape) != 3 and inp.flat_input:
        image = "images are given as C×H×W: input: [3, 224, 224] in the spec, or --input 3x224x224"
        if inp.producer == "the input":
            raise ShapeIssue(f"{what} needs an image-shaped input (channels×height×width) but the input is 1-D "
                             f"({fmt_shape(inp.shape)} features)", hint=image)
        raise ShapeIssue(f"{what} needs an image-shaped input (channels×height×width) but {inp.producer} yields "
                         f"flat features {fmt_shape(inp.shape)}, as the input is 1-D",
                         hint=f"{image}; or remove this layer")
    if len(inp.shape) != 3:
        raise ShapeIssue(
            f"{what} needs an image-shaped input (channels×height×width) but {inp.producer} "
            f"yields flat features {fmt_shape(inp.shape)}",
            hint="move this layer before the flatten, or remove it")
    c, h, w = inp.shape
    return c, h, w


def same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow's 'same': out = ceil(in / stride); the total padding
    max((out - 1)·stride + (kernel - 1)·dilation + 1 - in, 0) is split with the extra pixel
    after (bottom/right)."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def resolve_padding(padding: tuple[int, int] | str, hw: tuple[int, int], kernel: tuple[int, int],
                    stride: tuple[int, int], dilation: tuple[int, int] = (1, 1)) -> tuple[int, int, int, int]:
    """Per-side padding (top, bottom, left, right) for an int/pair, 'valid' or 'same' spec value."""
    if padding == "valid":
        return (0, 0, 0, 0)
    if padding == "same":
        top, bottom = same_padding(hw[0], kernel[0], stride[0], dilation[0])
        left, right = same_padding(hw[1], kernel[1], stride[1], dilation[1])
        return (top, bottom, left, right)
    assert not isinstance(padding, str), padding  # the spec allows no other word
    ph, pw = padding
    return (ph, ph, pw, pw)


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


def spatial_output(inp: LayerInput, hw: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int],
                   pads: tuple[int, int, int, int], dilation: tuple[int, int] = (1, 1),
                   ceil_mode: bool = False) -> tuple[int, int]:
    """Output (H, W) of a window layer, or a ShapeIssue explaining why the window does not fit."""
    top, bottom, left, right = pads
    out_h = window_output(hw[0], kernel[0], stride[0], top, bottom, dilation[0], ceil_mode)
    out_w = window_output(hw[1], kernel[1], stride[1], left, right, dilation[1], ceil_mode)
    if out_h >= 1 and out_w >= 1:
        return out_h, out_w
    extent = ((kernel[0] - 1) * dilation[0] + 1, (kernel[1] - 1) * dilation[1] + 1)
    padded = (hw[0] + top + bottom, hw[1] + left + right)
    dilated = f" (dilated to {fmt_shape(extent)})" if dilation != (1, 1) else ""
    if inp.producer == "the input":
        hint = f"use a kernel of at most {fmt_shape(padded)}, more padding, or a larger --input"
    else:
        hint = ("the layers before this one shrink the image too much: use a larger input, "
                "more padding, or fewer strided/pooling layers")
    raise ShapeIssue(
        f"kernel {fmt_shape(kernel)}{dilated} does not fit the {fmt_shape(padded)} input "
        f"(from {inp.producer}, after padding), so the output would be empty",
        field="kernel_size", hint=hint)
