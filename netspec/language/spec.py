"""The spec format: pydantic models for a whole network file, and validation that reports every
mistake at its YAML location with a did-you-mean hint."""

from __future__ import annotations

import collections
import functools
import keyword
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
    model_validator,
)

from netspec.errors import Location, Problem, SpecError, Suggestions, suggestion
from netspec.language.loader import LoadedSpec, load_spec_document
from netspec.language.validation import problems_from_validation
from netspec.layers import AnyLayer, Layer
from netspec.layers.base import (
    IDS,
    INPUT_RANKS,
    NETWORK_INPUT,
    TOKENS,
    Name,
    References,
    TensorShape,
    class_name_problem,
    generated_code_names,
)

SPEC_NAME_RE = r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$"


def _check_spec_name(value: str) -> str:
    problem = class_name_problem(value)
    if problem:
        raise ValueError(f"the spec name {value!r} clashes with {problem}; try '{value.rstrip('-_.')}-net'")
    return value


CLASS_NAME_RE = r"^[A-Z][A-Za-z0-9_]{0,63}$"


def _check_class_name(value: str) -> str:
    if not re.match(CLASS_NAME_RE, value):
        raise ValueError(f"{value!r} is not a class name: a capital letter, then letters, digits and underscores "
                         "(ResNet, GoogLeNet)")
    if keyword.iskeyword(value) or value in generated_code_names():
        what = "a Python keyword" if keyword.iskeyword(value) else generated_code_names()[value]
        raise ValueError(f"{value!r} is {what} in the generated code; try '{value}Net'")
    return value


MAX_IMAGE_SIDE = 16384  # pixels: beyond what image libraries decode by default


def _plain_path(value: str) -> str:
    if not value.isprintable():
        raise ValueError(f"{value!r} holds a control or invisible character; write the folder's path as plain text")
    return value


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class InputSpec(StrictModel):
    """The input tensor without the batch dimension, written in ``layout`` order."""

    shape: tuple[PositiveInt, ...] = Field(
        description="[C, H, W] (channels_first), [H, W, C] (channels_last), [C, L] (a sequence), [C, D, H, W] (a "
                    "volume), [L, D] (tokens: L positions of D features each), [L] (ids: L integer token ids, "
                    "which an embedding looks up) or [F].")
    layout: Literal["channels_first", "channels_last", "tokens", "ids"] = "channels_first"

    @model_validator(mode="before")
    @classmethod
    def _from_list(cls, value: Any) -> Any:
        # `input: [3, 224, 224]` is shorthand for `input: {shape: [3, 224, 224]}`
        if isinstance(value, (list, tuple)):
            return {"shape": tuple(value)}
        if isinstance(value, dict) and isinstance(value.get("shape"), list):
            return {**value, "shape": tuple(value["shape"])}
        return value

    @model_validator(mode="after")
    def _rank(self) -> InputSpec:
        if len(self.shape) not in INPUT_RANKS:
            raise ValueError(f"input shape must have 3 dimensions (an image, C×H×W), 2 (a sequence, C×L), 4 (a "
                             f"volume, C×D×H×W) or 1 (features), got {len(self.shape)}")
        if self.layout == "tokens" and len(self.shape) != 2:
            raise ValueError(f"a token sequence's shape is [L, D] (positions, features), got {len(self.shape)} "
                             "dimensions")
        if self.layout == "ids" and len(self.shape) != 1:
            raise ValueError(f"a sequence of token ids has the shape [L] (its length), got {len(self.shape)} "
                             "dimensions")
        return self

    @property
    def chw(self) -> tuple[int, ...]:
        """The shape as the checker works: channels first, or a token sequence (L, D) as it is."""
        if self.layout in ("tokens", "ids"):
            return TensorShape(self.shape, TOKENS if self.layout == "tokens" else IDS)
        if self.layout == "channels_last" and len(self.shape) > 1:
            return (self.shape[-1], *self.shape[:-1])
        return self.shape

    def with_sizes(self, sizes) -> tuple[int, ...]:
        """Other sizes (--input, always channels first) for an input of this layout."""
        if self.layout in ("tokens", "ids"):
            return TensorShape(tuple(sizes), TOKENS if self.layout == "tokens" else IDS)
        return tuple(sizes)


class Block(StrictModel):
    """A named group of layers; generated models mirror it (torchvision's ``features``,
    ``avgpool``, ``classifier``)."""

    name: Name
    layers: list[AnyLayer] = Field(min_length=1)


class DataSpec(StrictModel):
    """Where training data comes from and how images are prepared (used by ``netspec train``)."""

    dataset: Literal["digits", "cifar10", "imagefolder", "synthetic", "digit_masks", "code_lines"] = Field(
        "digits", description="digits ships inside scikit-learn, so it needs no download; digit_masks labels each "
        "pixel of the same digits (background, or which digit's ink) for a network that classifies every pixel; "
        "code_lines is text: which language (Python, C or shell) a line of the source code every Python "
        "installation has is in, a byte per token id.")
    path: Annotated[str, AfterValidator(_plain_path)] | None = Field(
        None, description="Folder of an imagefolder or cifar10 dataset.")
    resize: PositiveInt | None = Field(None, le=MAX_IMAGE_SIDE,
                                       description="Resize the shorter side to this before cropping.")
    random_crop: bool = Field(False, description="Crop to the input size at random (training) or centre (eval).")
    hflip: bool = Field(False, description="Random horizontal flips in training.")
    mean: tuple[float] | tuple[float, float, float] = Field(
        (0.485, 0.456, 0.406), description="Per-channel mean of the 0..1 pixel values, one value per input "
        "channel (default: ImageNet's; for a 1-channel input, their average, 0.449).")
    std: tuple[PositiveFloat] | tuple[PositiveFloat, PositiveFloat, PositiveFloat] = Field(
        (0.229, 0.224, 0.225), description="Per-channel standard deviation, as mean (default: ImageNet's; "
        "for a 1-channel input, 0.226).")
    val_fraction: float = Field(0.2, gt=0, lt=1, description="Held-out share when a dataset has no split.")

    def transform_is_random(self, *, train: bool) -> bool:
        """Whether a split's images come out differently each time they are drawn (random crops
        or flips, training only): only a deterministic transform's results may be kept."""
        return train and (self.random_crop or self.hflip)

    @model_validator(mode="before")
    @classmethod
    def _tuples(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: tuple(v) if isinstance(v, list) else v for k, v in value.items()}
        return value


class OptimizerSpec(StrictModel):
    name: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: PositiveFloat = 0.01
    momentum: float = Field(0.0, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    nesterov: bool = False


class ScheduleSpec(StrictModel):
    name: Literal["constant", "step", "plateau", "cosine"] = "constant"
    factor: float = Field(0.1, gt=0, lt=1, description="Multiplier for step and plateau schedules.")
    step_size: PositiveInt = Field(30, description="Epochs between steps (step schedule).")
    patience: PositiveInt = Field(5, description="Epochs without improvement before a plateau cut.")
    min_lr: float = Field(0.0, ge=0)


class TrainingSpec(StrictModel):
    """The training recipe; every field can be overridden on the command line."""

    epochs: PositiveInt = 10
    batch_size: PositiveInt = 128
    optimizer: OptimizerSpec = OptimizerSpec()
    schedule: ScheduleSpec = ScheduleSpec()
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    seed: int = Field(0, ge=0, lt=2**32, description="NumPy, PyTorch and TensorFlow all accept 0 to 2**32 - 1.")


class NetSpec(StrictModel):
    """A network definition: the document a spec YAML file holds."""

    name: Annotated[str, Field(pattern=SPEC_NAME_RE, description="The network's name."),
                    AfterValidator(_check_spec_name)]
    description: str = Field("", max_length=4000)
    class_name: Annotated[str, AfterValidator(_check_class_name),
                          WithJsonSchema({"type": "string", "pattern": CLASS_NAME_RE})] | None = Field(
        None, description="The class the PyTorch code defines, as torchvision names it (ResNet, GoogLeNet); by "
        "default the spec's name in CamelCase.")
    input: InputSpec
    params: dict[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")], int | float | str | bool] = Field(
        default_factory=dict, description="Named values referenced as ${name} anywhere in the spec.")
    layers: list[AnyLayer] | None = Field(None, min_length=1, description="The layers, in order.")
    blocks: list[Block] | None = Field(None, min_length=1, description="Named groups of layers, in order.")
    outputs: References | None = Field(None, min_length=1, description="The layers whose outputs the network "
                                       "returns; by default the last layer's.")
    data: DataSpec = DataSpec()
    training: TrainingSpec = TrainingSpec()

    @model_validator(mode="after")
    def _layers_or_blocks(self) -> NetSpec:
        if (self.layers is None) == (self.blocks is None):
            raise ValueError("give exactly one of 'layers' (a flat list) or 'blocks' (named groups)")
        return self

    @property
    def is_chain(self) -> bool:
        """Whether every layer takes the previous one's output and the last one's is the result:
        the generated code is then a sequence, as before graphs existed."""
        return all(layer.inputs is None for _, layer, _ in self.iter_layers()) and self.outputs is None

    def output_names(self) -> list[str]:
        if self.outputs is not None:
            return list(self.outputs)
        *_, (_, last, _) = self.iter_layers()
        return [last.name]

    def iter_layers(self) -> Iterator[tuple[str | None, Layer, tuple]]:
        """Every layer in order as (block name or None, layer, its path in the document)."""
        if self.layers is not None:
            for i, layer in enumerate(self.layers):
                yield None, layer, ("layers", i)
        for b, block in enumerate(self.blocks or ()):
            for i, layer in enumerate(block.layers):
                yield block.name, layer, ("blocks", b, "layers", i)


@dataclass
class SpecSource:
    """A validated spec and where it came from."""

    spec: NetSpec
    loaded: LoadedSpec

    @property
    def file(self) -> str:
        return self.loaded.file

    def location(self, path: tuple) -> Location:
        return self.loaded.location(path)


def load_spec(path: str | Path, overrides: list[str] | None = None) -> SpecSource:
    """Read, resolve and validate a spec file; raise SpecError listing every problem found."""
    return validate_document(load_spec_document(path, overrides))


def validate_document(loaded: LoadedSpec) -> SpecSource:
    """Validate a loaded document against the spec format."""
    try:
        spec = NetSpec.model_validate(loaded.data)
    except ValidationError as exc:
        raise SpecError(problems_from_validation(exc, loaded, NetSpec)) from None
    _check_unique_names(spec, loaded)
    _check_edges(spec, loaded)
    return SpecSource(spec, loaded)


@functools.cache
def layer_adapter() -> TypeAdapter:
    """Validates a single layer mapping (used to keep checking when other parts are invalid)."""
    return TypeAdapter(AnyLayer)


def _check_unique_names(spec: NetSpec, loaded: LoadedSpec) -> None:
    seen: dict[str, tuple] = {}
    problems = []
    counts = collections.Counter(b.name for b in spec.blocks or ())
    block_names = set(counts)
    for dup in sorted(n for n, count in counts.items() if count > 1):
        problems.append(Problem(f"two blocks are named '{dup}'", loaded.location(("blocks",)),
                                hint="give each block its own name"))
    for _, layer, path in spec.iter_layers():
        if layer.name in seen:
            first = loaded.location(seen[layer.name])
            problems.append(Problem(
                f"the name '{layer.name}' is already used by the layer at line {first.line}",
                loaded.location((*path, "name")), layer=layer.name, hint="give every layer its own name"))
        elif layer.name in block_names:
            problems.append(Problem(f"the name '{layer.name}' is also a block's name",
                                    loaded.location((*path, "name")), layer=layer.name,
                                    hint="layer and block names share one namespace in generated code"))
        else:
            seen[layer.name] = path
    if problems:
        raise SpecError(problems)


# A merge of more inputs is one Python expression too deeply nested to compile (add of 3,000);
# DenseNet-264's widest concatenation takes 65.
MAX_INPUTS = 256


def _check_edges(spec: NetSpec, loaded: LoadedSpec) -> None:
    """Every `inputs:` and `outputs:` names an earlier layer (which also rules out cycles: the
    document order is a topological order), each layer gets as many inputs as it takes, and every
    layer's output is used."""
    lines = {layer.name: loaded.location((*path, "name")).line for _, layer, path in spec.iter_layers()}
    problems: list[Problem] = []
    earlier: list[str] = [NETWORK_INPUT]  # in order, for hints; the set answers 'is it earlier?'
    seen = {NETWORK_INPUT}
    suggest = Suggestions()  # each hint compares with every earlier name: a bounded number of them
    used: set[str] = set()
    meant: set[str] = set()  # layers a misspelt input probably names: not also reported as unused
    previous = NETWORK_INPUT
    for block, layer, path in spec.iter_layers():
        if layer.inputs is not None and block is not None:
            problems.append(Problem("'inputs' is not available inside blocks, which generated code builds as "
                                    "sequences (nn.Sequential)", loaded.location((*path, "inputs")),
                                    layer=layer.name, hint="use a flat 'layers:' list for a graph"))
        names = layer.inputs if layer.inputs is not None else [previous]
        for i, name in enumerate(names):
            where = loaded.location((*path, "inputs", i) if layer.inputs is not None else path)
            if name not in seen:
                problem, close = _reference_problem(name, layer.name, where, earlier, lines, suggest)
                problems.append(problem)
                if close is not None:
                    meant.add(_scope_of(layer.name) + close)
        low, high = layer.arity
        if len(names) > MAX_INPUTS:
            problems.append(Problem(f"{layer.kind} takes at most {MAX_INPUTS} inputs, got {len(names):,}",
                                    loaded.location((*path, "inputs")), layer=layer.name,
                                    hint="merge them in steps, a few hundred at a time at most"))
        if len(names) < low or (high is not None and len(names) > high):
            wanted = f"{low}" if low == high else f"at least {low}" if high is None else f"{low} to {high}"
            problems.append(Problem(f"{layer.kind} takes {wanted} input{'s' if wanted != '1' else ''}, got "
                                    f"{len(names)}", loaded.location((*path, "inputs")), layer=layer.name,
                                    hint=f"e.g. inputs: [{', '.join(earlier[-2:])}]" if low > 1 else
                                    "give it one input, or use a merge (add, concat, multiply) to join several"))
        used.update(names)
        earlier.append(layer.name)
        seen.add(layer.name)
        previous = layer.name
    outputs = spec.output_names()
    for i, name in enumerate(outputs):
        if spec.outputs is not None and "." in name and name in seen:  # what the generated forward() can name
            use = name.split(".")[0]
            problems.append(Problem(f"'{name}' is a layer inside the module use '{use}'; outputs name the "
                                    "spec's own layers and uses", loaded.location(("outputs", i)),
                                    hint=f"add a layer after the use that takes '{use}' (its output is its last "
                                    f"layer's), such as {{type: identity, inputs: [{use}]}}, and name that"))
        elif name not in seen or name == NETWORK_INPUT:
            where = loaded.location(("outputs", i))
            problems.append(_reference_problem(name, None, where, earlier[1:], {}, suggest)[0])
    used.update(outputs)
    for _, layer, path in spec.iter_layers():
        if layer.name not in used and layer.name not in meant:
            problems.append(Problem(f"the output of '{layer.name}' is never used", loaded.location((*path, "name")),
                                    layer=layer.name, hint="name it in a later layer's 'inputs' or in 'outputs', "
                                    "or remove the layer"))
    if problems:
        raise SpecError(problems)


def _scope_of(layer: str) -> str:
    """'layer2.0.' for 'layer2.0.conv1'; '' at the top level."""
    return layer.rsplit(".", 1)[0] + "." if "." in layer else ""


def _reference_problem(name: str, layer: str | None, where: Location, earlier: list[str],
                       lines: dict[str, int], suggest: Suggestions) -> tuple[Problem, str | None]:
    """The problem with a reference to ``name``, and the (local) name it probably misspells."""
    if name == layer:
        return Problem(f"'{name}' takes its own output, which would be a cycle", where, layer=layer,
                       hint="name an earlier layer, or 'input' for the network input"), None
    if name in lines:
        return Problem(f"'{name}' (line {lines[name]}) comes after this layer; a layer can only take the outputs "
                       "of layers before it", where, layer=layer,
                       hint="move the layers into the order data flows through them (this also rules out cycles)"), None
    which = "earlier layer" if layer is not None else "layer"
    if layer is not None and "." in layer and suggest.left > 0:  # inside a module: the names its layers can write
        scope = _scope_of(layer)
        local = [e[len(scope):] for e in earlier if e.startswith(scope) and "." not in e[len(scope):]]
        earlier = [*local, "input"]
    close = suggest.closest(name, earlier)
    hint = suggestion(close) if close is not None else f"{which}s: {', '.join(earlier[-6:])}"
    return Problem(f"there is no {which} named '{name}'", where, layer=layer, hint=hint), close
