"""The spec format: pydantic models for a whole network file, and validation that reports every
mistake at its YAML location with a did-you-mean hint."""

from __future__ import annotations

import collections
import functools
import keyword
import re
import typing
from collections.abc import Iterator, Mapping
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

from netspec.errors import Location, Problem, SpecError, Suggestions, closest_name, did_you_mean, suggestion
from netspec.expressions import LARGEST
from netspec.layers import LAYER_REGISTRY, AnyLayer, Layer
from netspec.layers.base import (
    INPUT_RANKS,
    NETWORK_INPUT,
    Name,
    References,
    class_name_problem,
    generated_code_names,
)
from netspec.loader import LoadedSpec, load_spec_document

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
        description="[C, H, W] (channels_first), [H, W, C] (channels_last), [C, L] (a sequence) or [F].")
    layout: Literal["channels_first", "channels_last"] = "channels_first"

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
            raise ValueError(f"input shape must have 3 dimensions (an image, C×H×W), 2 (a sequence, C×L) or 1 "
                             f"(features), got {len(self.shape)}")
        return self

    @property
    def chw(self) -> tuple[int, ...]:
        """The shape channels-first, as the checker works."""
        if self.layout == "channels_last" and len(self.shape) > 1:
            return (self.shape[-1], *self.shape[:-1])
        return self.shape


class Block(StrictModel):
    """A named group of layers; generated models mirror it (torchvision's ``features``,
    ``avgpool``, ``classifier``)."""

    name: Name
    layers: list[AnyLayer] = Field(min_length=1)


class DataSpec(StrictModel):
    """Where training data comes from and how images are prepared (used by ``netspec train``)."""

    dataset: Literal["digits", "cifar10", "imagefolder", "synthetic"] = Field(
        "digits", description="digits ships inside scikit-learn, so it needs no download.")
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
        raise SpecError(_problems_from_validation(exc, loaded)) from None
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


# --- pydantic errors -> located, readable problems ------------------------------------------------

def _problems_from_validation(exc: ValidationError, loaded: LoadedSpec) -> list[Problem]:
    problems: list[Problem] = []
    seen: set[tuple] = set()
    errors = [(err, *_data_path(err["loc"], loaded.data)) for err in exc.errors(include_url=False)]
    # a misspelt required key is one mistake, not two: its "unknown key" error (which suggests the
    # right spelling) stands, and the "missing required key" error for that spelling is dropped
    misspelt = {(path[:-1], _closest_field(str(path[-1]), model))
                for err, path, model, _ in errors if err["type"] == "extra_forbidden" and path}
    for err, path, model, layer_name in errors:
        if err["type"] == "missing" and (path[:-1], str(err["loc"][-1])) in misspelt:
            continue
        if err["type"] == "union_tag_invalid":
            path = (*path, "type")
        message, hint = _describe(err, path, model)
        key = (path, message)
        if key in seen:
            continue
        seen.add(key)
        problems.append(Problem(message, loaded.location(path), layer=layer_name, hint=hint))
    return problems


def _closest_field(key: str, model: type[BaseModel] | None) -> str | None:
    if model is None:
        return None
    return closest_name(key, list(model.model_fields), getattr(model, "synonyms", {}))


def _data_path(loc: tuple, data: Any) -> tuple[tuple, type[BaseModel] | None, str | None]:
    """Map pydantic's error location onto the document.

    pydantic's ``loc`` mixes document keys with its own steps (the discriminator tag of a layer,
    validator names); keep the former, and track which model class and which layer the error is in.
    """
    path: list[Any] = []
    node = data
    model: type[BaseModel] | None = NetSpec
    owner = model  # the model whose field the error is about
    layer_name = None
    for part in loc:
        if isinstance(node, dict) and part in node:
            owner = model
            model = _field_model(model, part) if model is not None else None
            node = node[part]
            path.append(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
            path.append(part)
        elif isinstance(node, dict) and node.get("type") == part:
            continue  # the discriminator tag: the layer's class was picked up below
        elif isinstance(node, dict) and model is not None and part in model.model_fields:
            owner = model
            path.append(part)  # a key absent from the document ('missing')
            node = None
        else:
            node = None  # a pydantic-internal step
        if isinstance(node, dict) and "type" in node:
            if isinstance(node.get("name"), str):
                layer_name = node["name"]
            model = LAYER_REGISTRY.get(node["type"]) if isinstance(node["type"], str) else None
            owner = model
    return tuple(path), owner, layer_name


def _field_model(model: type[BaseModel], field_name: str) -> type[BaseModel] | None:
    field = model.model_fields.get(field_name)
    if field is None:
        return None
    return _first_model(field.annotation)


def _first_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _first_model(arg)
        if found is not None and found is not Layer and not issubclass(found, Layer):
            return found
    return None


_PYDANTIC_PREFIX = re.compile(r"^(Value error|Assertion failed), ")


def _describe(err: Mapping[str, Any], path: tuple, model: type[BaseModel] | None) -> tuple[str, str | None]:
    kind = err["type"]
    key = path[-1] if path and isinstance(path[-1], str) else None
    where = f"'{key}'" if key else "value"
    got = err.get("input")
    ctx = err.get("ctx") or {}
    fields = list(model.model_fields) if model is not None else []
    synonyms = getattr(model, "synonyms", {}) if model is not None else {}

    if kind == "extra_forbidden":
        hint = did_you_mean(str(key), fields, synonyms)
        allowed = f"allowed keys: {', '.join(fields)}" if fields else None
        return f"unknown key '{key}'", hint or allowed
    if kind == "missing":
        missing = err["loc"][-1]
        return f"missing required key '{missing}'", _missing_hint(str(missing))
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        types_ = sorted(LAYER_REGISTRY)
        if kind == "union_tag_not_found":
            return "a layer needs a 'type'", f"one of: {', '.join(types_)}"
        tag = ctx.get("tag", got)
        hint = did_you_mean(str(tag), types_, _type_synonyms()) or f"known types: {', '.join(types_)}"
        return f"unknown layer type '{tag}'", hint
    if kind == "literal_error":
        return f"{where} is {got!r}; expected {ctx.get('expected')}", None
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        bound = {"greater_than": "more than", "greater_than_equal": "at least",
                 "less_than": "less than", "less_than_equal": "at most"}[kind]
        limit = next(iter(ctx.values()), None)
        return f"{where} must be {bound} {limit}, got {got!r}", None
    if kind == "string_pattern_mismatch":
        return f"{where} {got!r} is not a valid name", "use letters, digits, '_', '-' or '.', starting with a letter"
    if kind in ("int_type", "float_type", "bool_type", "string_type", "dict_type", "list_type",
                "model_type", "tuple_type"):
        expected = {"int_type": "an integer", "float_type": "a number", "bool_type": "true or false",
                    "string_type": "text", "dict_type": "a mapping", "list_type": "a list",
                    "model_type": "a mapping", "tuple_type": "a list"}[kind]
        return f"{where} must be {expected}, got {got!r}", None
    if kind == "too_short":
        return f"{where} must not be empty", None
    message = _PYDANTIC_PREFIX.sub("", err["msg"])
    return (f"{where}: {message}" if key else message), None


def _type_synonyms() -> dict[str, str]:
    """What other frameworks call each type ('dense' -> 'linear'), as the layer classes say."""
    return {synonym: kind for kind, cls in LAYER_REGISTRY.items() for synonym in cls.type_synonyms}


def _missing_hint(key: str) -> str | None:
    examples = {
        "name": "every spec and block needs a name, e.g. name: alexnet",
        "input": "e.g. input: [3, 224, 224]",
        "out_channels": "the number of filters, e.g. out_channels: 96",
        "kernel_size": "e.g. kernel_size: 3",
        "out_features": "the number of units, e.g. out_features: 4096",
        "output_size": "e.g. output_size: 6",
    }
    return examples.get(key)


_PARAM_REF_SCHEMA = {"type": "string", "pattern": r"^\$\{[^${}]+\}$",
                     "description": "A param or an expression of params: ${width}, ${planes * 4}, ${stride == 1}."}


def _allow_param_refs(node: Any, key: str | None = None) -> Any:
    """Any scalar may be written as ${param}; say so in the schema (except for type and name)."""
    if isinstance(node, list):
        return [_allow_param_refs(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for k, v in node.items():
        if k == "properties":
            out[k] = {name: (sub if name in ("type", "name") else _allow_param_refs(sub, name))
                      for name, sub in v.items()}
        elif k in ("$defs", "definitions"):
            out[k] = {name: _allow_param_refs(sub) for name, sub in v.items()}
        else:
            out[k] = _allow_param_refs(v) if isinstance(v, (dict, list)) else v
    if out.get("type") in ("integer", "number"):  # as the loader bounds every number (expressions.LARGEST)
        out.setdefault("maximum", LARGEST)
    scalar = out.get("type") in ("integer", "number", "boolean") or "enum" in out or "const" in out
    if scalar and key is not None:
        return {"anyOf": [out, _PARAM_REF_SCHEMA]}
    if scalar and key is None and "items" not in out:
        return {"anyOf": [out, _PARAM_REF_SCHEMA]}
    return out


def json_schema() -> dict:
    """The JSON Schema of the spec format, for editors (YAML language servers) and tools."""
    schema = _allow_param_refs(NetSpec.model_json_schema())
    input_def = schema["$defs"]["InputSpec"]
    schema["$defs"]["InputSpec"] = {"anyOf": [input_def, input_def["properties"]["shape"]],
                                    "description": input_def.get("description", "")}
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "netspec network spec"
    props = schema.setdefault("properties", {})
    props["extends"] = {"type": "string", "description": "Path of a base spec this variant overrides."}
    props["patch"] = {"type": "object", "description": "Layer name -> fields to change in the base.",
                      "additionalProperties": {"type": "object"}}
    props["remove"] = {"type": "array", "items": {"type": "string"}, "description": "Base layers to delete."}
    props["replace"] = {"type": "object", "description": "Base layer name -> the layer (or list of layers) "
                        "that takes its place.", "additionalProperties": {"type": ["object", "array"]}}
    props["insert"] = {"type": "array", "description": "Layers to add before or after a base layer.",
                       "items": {"type": "object", "required": ["layers"],
                                 "properties": {"before": {"type": "string"}, "after": {"type": "string"},
                                                "layers": {"type": "array", "items": {"type": "object"}}}}}
    _add_modules(schema)
    # a variant inherits its base's required keys, so require them only of specs without 'extends'
    required = schema.pop("required", [])
    schema["if"] = {"not": {"required": ["extends"]}}
    schema["then"] = {"required": required}
    return schema


def _add_modules(schema: dict) -> None:
    """Modules (netspec.modules): their definitions under ``modules:``, uses of them among the
    layers, and ``when:`` on any layer. They are expanded before validation, so the pydantic
    models behind the rest of the schema do not know them."""
    when = {"anyOf": [{"type": "boolean"}, _PARAM_REF_SCHEMA],
            "description": "false leaves the layer out; whoever takes it takes its input instead."}
    defs = schema["$defs"]
    for definition in defs.values():
        properties = definition.get("properties", {})
        if "type" in properties and "const" in properties["type"]:  # a layer type of the catalogue
            properties["when"] = when
            # unnamed layers are numbered (a sequential module's) or named after their type
            definition["required"] = [key for key in definition.get("required", []) if key != "name"]
    count = {"anyOf": [{"type": "integer", "minimum": 1}, _PARAM_REF_SCHEMA]}
    values = {"type": "object", "additionalProperties": {}}
    defs["ModuleUse"] = {
        "type": "object", "required": ["module"], "additionalProperties": False,
        "description": "A use of a module declared under 'modules:', in place of a layer.",
        "properties": {
            "name": {"type": "string"}, "module": {"type": "string"},
            "inputs": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1}]},
            "params": {**values, "description": "Values for the module's params."},
            "repeat": {**count, "description": "Stamp the module this many times in a chain."},
            "first": {**values, "description": "Params of the first repetition."},
            "names": {"type": "string", "description": "Repetition names: denselayer{n} (from 1), b{i} (from 0)."},
            "when": when,
            "inline": {"type": "boolean", "description": "Number the use's contents in the enclosing sequence."},
        },
    }
    spec_layers = schema["properties"]["layers"]["anyOf"][0]
    item = {"anyOf": [spec_layers["items"], {"$ref": "#/$defs/ModuleUse"}]}
    spec_layers["items"] = item
    schema["properties"]["modules"] = {
        "type": "object", "description": "Named sub-networks with params, used among the layers with 'module:'.",
        "propertyNames": {"pattern": r"^[A-Za-z][A-Za-z0-9_]*$"},
        "additionalProperties": {
            "type": "object", "required": ["layers"], "additionalProperties": False,
            "properties": {
                "params": {"type": "object", "description": "Param names and defaults (null: every use gives it).",
                           "additionalProperties": {"type": ["integer", "number", "string", "boolean", "null"]}},
                "inputs": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1}],
                           "description": "The names its layers take a use's inputs by (default: one, 'input')."},
                "layers": {"type": "array", "minItems": 1, "items": item},
                "sequential": {"type": "boolean", "description": "A chain numbered as nn.Sequential numbers it."},
                "description": {"type": "string"},
            },
        },
    }

