"""The shape and parameter checker: pure Python, no framework imports.

Walks the layers in order, asks each catalogue entry what it does to its input, and collects
per-layer output shape, parameters, MACs, activation size and receptive field, plus totals and a
memory estimate. Every problem is reported at once with its YAML location.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from fractions import Fraction
from math import prod
from typing import Any

from netspec.errors import Location, Problem, SpecError
from netspec.language.expressions import Expression
from netspec.language.loader import LoadedSpec, load_spec_document
from netspec.language.spec import NetSpec, SpecSource, layer_adapter, validate_document
from netspec.layers import Analysis, Layer, LayerInput, Shape, ShapeIssue, fmt_shape
from netspec.layers.base import INPUT_RANKS, KINDS, LAYOUTS, NETWORK_INPUT, layout_of, refuse_token_ids, spatial_rank

# (block name or None, layer, path of the layer in the document), in network order
LayerItems = list[tuple[str | None, Layer, tuple]]

BYTES_PER_VALUE = 4  # float32
SEARCH_RADIUS = 32  # pixels either side of the given input size when suggesting a fitting one


@dataclass
class CheckedLayer:
    """One layer with everything the checker worked out about it."""

    index: int
    name: str
    type: str
    block: str | None
    layer: Layer
    path: tuple
    location: Location
    input_shape: Shape
    output_shape: Shape
    params: int
    non_trainable: int
    macs: int
    receptive_field: tuple[int, ...] | None  # per spatial axis; None once the layer sees the whole input
    resolved: dict[str, Any] = field(default_factory=dict)
    inputs: tuple[str, ...] = ()  # the layers (or 'input') whose outputs it takes
    input_shapes: tuple[Shape, ...] = ()
    kept_elements: int = 0  # besides its output: an attention layer's attention maps

    @property
    def activation_elements(self) -> int:
        return _numel(self.output_shape) + self.kept_elements


@dataclass(frozen=True)
class Totals:
    params: int
    trainable_params: int
    non_trainable_params: int
    macs: int
    input_bytes: int
    activation_bytes: int  # forward + backward, all layer outputs
    param_bytes: int
    # the most activations alive at once in evaluation (a tensor lives until its last consumer)
    inference_peak_bytes: int = 0

    @property
    def total_bytes(self) -> int:
        return self.input_bytes + self.activation_bytes + self.param_bytes


@dataclass
class CheckedNet:
    """A spec whose every layer has a known shape: what backends render and reports show."""

    source: SpecSource
    input_shape: Shape  # channels-first, without batch
    batch: int
    layers: list[CheckedLayer]
    totals: Totals

    @property
    def spec(self) -> NetSpec:
        return self.source.spec

    @property
    def output_names(self) -> list[str]:
        return self.spec.output_names()

    @property
    def output_shape(self) -> Shape:
        """The (first) output's shape."""
        return self.layer(self.output_names[0]).output_shape if self.layers else self.input_shape

    def require_one_output(self, what: str) -> None:
        """``what`` (training, a benchmark) needs the class scores alone."""
        if len(self.output_names) > 1:
            raise SpecError.single(f"{what} needs one output (the class scores), but the spec names "
                                   f"{len(self.output_names)}: {', '.join(self.output_names)}",
                                   self.source.location(("outputs",)),
                                   hint="use a variant whose 'outputs' is the classifier alone")

    def written(self, checked: CheckedLayer) -> dict[str, str]:
        """The fields of a layer that the spec wrote as ``${...}``, as written (``out_channels:
        "${planes * 4}"``), each looked up where it is written: in the module definition, for a
        layer of a module use, where every use computed its own value from it."""
        found = {}
        for key in type(checked.layer).model_fields:
            if key in ("name", "type"):
                continue
            written = self.source.loaded.expressions.get(self.source.location((*checked.path, key)))
            if written is not None:
                found[key] = f"${{{written.text}}}" if isinstance(written, Expression) else written
        return found

    def layer(self, name: str) -> CheckedLayer:
        for checked in self.layers:
            if checked.name == name:
                return checked
        raise KeyError(name)


def check(source: SpecSource, *, input_shape: Shape | None = None, batch: int = 1) -> CheckedNet:
    """Infer every layer's shape and cost; raise SpecError listing all problems found."""
    if batch < 1:
        raise SpecError.single(f"batch must be at least 1, got {batch}")
    spec = source.spec
    shape = spec.input.with_sizes(input_shape) if input_shape is not None else spec.input.chw
    if input_shape is not None and len(shape) not in INPUT_RANKS:
        raise SpecError.single(f"--input must be C×H×W, C×L, C×D×H×W or F, got {fmt_shape(shape)}")
    if input_shape is not None and len(shape) != len(spec.input.chw):  # another size, not another kind of input
        written, wanted = "x".join(map(str, shape)), layout_of(spec.input.chw)
        raise SpecError.single(
            f"--input {written} is {KINDS[spatial_rank(shape)]} ({LAYOUTS[spatial_rank(shape)]}), and the spec's "
            f"input is {wanted.kind} ({wanted.name}, {fmt_shape(spec.input.chw)})", Location(f"--input {written}"),
            hint=f"give every size of the input, as the spec does: --input {'x'.join(map(str, spec.input.chw))}")
    if prod(shape) > MAX_LAYER_OUTPUT:  # a pooling layer could shrink it, but nothing could hold it
        where = (source.location(("input",)) if input_shape is None
                 else Location(f"--input {'x'.join(map(str, shape))}"))
        raise SpecError.single(f"the input has {prod(shape):,} values per sample, {TOO_BIG}", where,
                               hint="check the input's sizes for a typo")
    items = list(spec.iter_layers())
    layers, problems = _propagate(items, source.loaded, shape)
    if problems:
        hint = _transposed_input_hint(shape, explicit=input_shape is not None, layout=spec.input.layout)
        raise SpecError([dataclasses.replace(p, hint=hint) for p in problems] if hint else problems)
    return CheckedNet(source, shape, batch, layers, _totals(layers, shape, batch))


def _transposed_input_hint(shape: Shape, *, explicit: bool, layout: str) -> str | None:
    """When an input that does not fit looks written height, width, channels (224×224×3, 28×28×1),
    say that it is read channels first, instead of hinting at kernels that fit a 224-channel
    224×3 image."""
    if len(shape) != 3:
        return None
    a, b, c = shape
    if c not in (1, 3, 4) or min(a, b) < 8:
        return None
    reading = f"{a} channels of {b}×{c} pixels"
    if explicit:
        return f"--input is C×H×W, so {a}x{b}x{c} reads as {reading}: did you mean --input {c}x{a}x{b}?"
    if layout == "channels_first":
        return (f"input is C×H×W unless the spec says 'layout: channels_last', so [{a}, {b}, {c}] reads as "
                f"{reading}: did you mean input: [{c}, {a}, {b}], or layout: channels_last?")
    return None


def check_file(path, overrides: list[str] | None = None, *, input_shape: Shape | None = None,
               batch: int = 1) -> CheckedNet:
    """Load, validate and check a spec file. When validation fails, the layers before the first
    invalid one are still shape-checked, so all mistakes are reported in one go."""
    loaded = load_spec_document(path, overrides)
    try:
        source = validate_document(loaded)
    except SpecError as exc:
        raise SpecError(exc.problems + _partial_shape_problems(loaded, input_shape)) from None
    return check(source, input_shape=input_shape, batch=batch)


def _partial_shape_problems(loaded: LoadedSpec, input_shape: Shape | None) -> list[Problem]:
    from netspec.language.spec import InputSpec

    if input_shape is None:
        try:
            input_shape = InputSpec.model_validate(loaded.data.get("input")).chw
        except Exception:  # the input itself is invalid and already reported
            return []
    items: LayerItems = []
    data = loaded.data
    groups: list[tuple[Any, Any, tuple]] = [(None, data.get("layers"), ("layers",))]
    if isinstance(data.get("blocks"), list):
        groups += [(b.get("name"), b.get("layers"), ("blocks", i, "layers"))
                   for i, b in enumerate(data["blocks"]) if isinstance(b, dict)]
    adapter = layer_adapter()
    for block, layers, prefix in groups:
        for i, raw in enumerate(layers if isinstance(layers, list) else []):
            try:
                items.append((block, adapter.validate_python(raw), (*prefix, i)))
            except Exception:
                return _propagate(items, loaded, input_shape)[1]  # shapes after an invalid layer are unknown
    return _propagate(items, loaded, input_shape)[1]


@dataclass(frozen=True)
class _Tensor:
    """A produced tensor as the checker tracks it: its shape, who made it (for messages) and the
    receptive field of its values."""

    shape: Shape
    producer: str
    flat_input: bool  # flat features that come from a 1-D network input, not from a flatten
    rf: tuple[int, ...] = (1, 1)  # per spatial axis
    jump: tuple[int, ...] = (1, 1)
    whole: bool = False  # sees the whole input
    flattened_from: Shape | None = None  # the image a flatten made these features of (for messages)


def _propagate(items: LayerItems, loaded: LoadedSpec, shape: Shape, *, stop_at: str | None = None,
               explain: bool = True) -> tuple[list[CheckedLayer], list[Problem]]:
    """Run the shape rules over the layers in document order, which is a topological order of the
    graph (validation made sure every input is an earlier layer); stops at ``stop_at``. A layer
    whose shape cannot be inferred leaves its output unknown: the layers that depend on it are
    skipped, the others still checked, so mistakes in two branches are both reported."""
    checked: list[CheckedLayer] = []
    problems: list[Problem] = []
    input_shape = shape
    axes = (1,) * max(spatial_rank(shape), 1)
    tensors = {NETWORK_INPUT: _Tensor(shape, "the input", flat_input=len(shape) == 1, rf=axes, jump=axes)}
    previous = NETWORK_INPUT
    too_big = False  # reported once: later layers only inherit the size
    search = True  # look for a fitting input size once: each look runs the layers up to 64 times
    for index, (block, layer, path) in enumerate(items):
        names = list(layer.inputs) if layer.inputs is not None else [previous]
        if any(name not in tensors for name in names):
            previous = layer.name  # an unknown input was reported by validation, or its shape is unknown
            continue
        ins = [tensors[name] for name in names]
        if layer.name == stop_at:
            checked.append(_stub(index, block, layer, path, loaded, ins[0].shape))
            break
        location = loaded.location(path)
        if block is not None and not layer.chains_as_module and explain:  # a block is a chain of modules
            problems.append(Problem(f"a block applies each layer as a module on one input, and {layer.kind} is "
                                    + ("a learned tensor" if layer.learned_tensor else
                                       "applied with more than its input as a module"), location, layer=layer.name,
                                    hint="write the network as a flat 'layers:' list"))
        try:
            given = [LayerInput(t.shape, t.producer, flat_input=t.flat_input) for t in ins]
            refuse_token_ids(layer, given)
            analysis = layer.analyze_inputs(given)
        except ShapeIssue as shape_issue:
            if explain:
                problems.append(_problem(shape_issue, items, loaded, layer, path, input_shape, search=search))
            previous = layer.name  # its output is unknown, and so is every layer's that takes it
            continue
        if explain:
            for issue in analysis.issues:
                problems.append(_problem(issue, items, loaded, layer, path, input_shape, search=search))
                search &= issue.field != "in_features"
            if not too_big:
                found = _too_big(analysis, layer, location)
                problems += found
                too_big = bool(found)
        rf, jump, whole = _receptive(analysis, ins)
        checked.append(CheckedLayer(
            index=index, name=layer.name, type=layer.kind, block=block, layer=layer, path=path,
            location=location, input_shape=ins[0].shape, output_shape=analysis.output, params=analysis.params,
            non_trainable=analysis.non_trainable, macs=analysis.macs,
            receptive_field=None if whole else tuple(math.ceil(r) for r in rf), resolved=analysis.resolved,
            inputs=tuple(names),
            kept_elements=analysis.kept_elements,
            input_shapes=tuple(t.shape for t in ins)))
        flattened_from = None
        if analysis.flattens and spatial_rank(ins[0].shape) > 0:
            flattened_from = ins[0].shape
        elif analysis.output == ins[0].shape:
            flattened_from = ins[0].flattened_from  # dropout after a flatten: still those features
        producer = f"layer '{layer.name}' (line {location.line})"
        if flattened_from is not None:
            producer += f", flattening {fmt_shape(flattened_from)},"
        tensors[layer.name] = _Tensor(analysis.output, producer, all(t.flat_input for t in ins)
                                      and len(analysis.output) == 1, rf, jump, whole, flattened_from)
        previous = layer.name
    return checked, problems


MAX_LAYER_PARAMS = 2**34  # 64 GiB of float32 in one layer: beyond any accelerator's memory
MAX_LAYER_OUTPUT = 2**31  # elements per sample: frameworks' 32-bit indexing limit
TOO_BIG = "beyond what a framework can build"


def _too_big(analysis: Analysis, layer: Layer, location) -> list[Problem]:
    """A layer no framework could build or run: refused here, before a framework tries to allocate it."""
    elements = prod(analysis.output)
    if analysis.params + analysis.non_trainable > MAX_LAYER_PARAMS:
        what = f"{analysis.params + analysis.non_trainable:,} parameters"
    elif elements > MAX_LAYER_OUTPUT:
        what = f"an output of {elements:,} values per sample"
    else:
        return []
    return [Problem(f"it would have {what}, {TOO_BIG}", location,
                    layer=layer.name, hint="check its sizes (out_channels, out_features, kernel_size) for a typo")]


def _stub(index, block, layer, path, loaded, shape) -> CheckedLayer:
    return CheckedLayer(index, layer.name, layer.kind, block, layer, path, loaded.location(path),
                        shape, shape, 0, 0, 0, None)


def _receptive(analysis: Analysis, ins: list[_Tensor]):
    """Receptive field r and jump j per axis: r += (k_eff - 1)·j, j *= stride; over a graph, the
    largest over the paths that reach the layer."""
    rf = tuple(max(t.rf[axis] for t in ins) for axis in range(len(ins[0].rf)))
    jump = tuple(max(t.jump[axis] for t in ins) for axis in range(len(ins[0].jump)))
    if any(t.whole for t in ins) or analysis.flattens or analysis.sees_whole_input:
        return rf, jump, True
    window = analysis.window
    if window is None:
        return rf, jump, False
    new_rf = tuple(r + ((k - 1) * d) * j for r, k, d, j in zip(rf, window.kernel, window.dilation, jump, strict=True))
    # an upsampling layer's outputs are a fraction of an input pixel apart
    new_jump = tuple(j * s / Fraction(u) for j, s, u in zip(jump, window.stride, window.upsample, strict=True))
    return new_rf, new_jump, False


def _problem(issue: ShapeIssue, items: LayerItems, loaded: LoadedSpec, layer: Layer, path: tuple,
             input_shape: Shape, *, search: bool = True) -> Problem:
    field_path = (*path, issue.field) if issue.field else path
    location = loaded.location(field_path)
    if issue.field and field_path not in loaded.locations:
        location = loaded.location(path)  # the field was defaulted, so point at the layer
    hint = issue.hint
    if search and issue.field == "in_features" and getattr(layer, "in_features", None):
        fitting = _fitting_input(items, loaded, input_shape, layer.name, layer.in_features)  # type: ignore[attr-defined]
        if fitting:
            size, before = fitting
            dims = "x".join(map(str, size))
            hint = (f"{hint}; or feed {fmt_shape(size)} inputs, for which the layers before it yield "
                    f"{fmt_shape(before)} = {layer.in_features:,} features (--input {dims})")  # type: ignore[attr-defined]
    return Problem(issue.message, location, layer=layer.name, hint=hint)


def _fitting_input(items: LayerItems, loaded: LoadedSpec, input_shape: Shape, layer_name: str,
                   wanted: int) -> tuple[Shape, Shape] | None:
    """The input size nearest the spec's for which ``layer_name`` receives ``wanted`` features
    (AlexNet without conv1 padding needs 227×227, not the 224×224 many write-ups state)."""
    if len(input_shape) != 3:
        return None
    c, h, w = input_shape
    for delta in sorted(range(-SEARCH_RADIUS, SEARCH_RADIUS + 1), key=lambda d: (abs(d), d)):
        if delta == 0 or min(h, w) + delta < 1:
            continue
        candidate = (c, h + delta, w + delta)
        layers, _ = _propagate(items, loaded, candidate, stop_at=layer_name, explain=False)
        if not layers or layers[-1].name != layer_name:
            continue
        if layers[-1].input_shape == (wanted,):
            spatial = [cl.input_shape for cl in layers if cl.layer.flattens]
            return candidate, spatial[-1] if spatial else (wanted,)
    return None


def _numel(shape: Shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _totals(layers: list[CheckedLayer], input_shape: Shape, batch: int) -> Totals:
    trainable = sum(cl.params for cl in layers)
    frozen = sum(cl.non_trainable for cl in layers)
    return Totals(
        params=trainable + frozen,
        trainable_params=trainable,
        non_trainable_params=frozen,
        macs=sum(cl.macs for cl in layers),
        input_bytes=batch * _numel(input_shape) * BYTES_PER_VALUE,
        activation_bytes=2 * batch * sum(cl.activation_elements for cl in layers) * BYTES_PER_VALUE,
        param_bytes=(trainable + frozen) * BYTES_PER_VALUE,
        inference_peak_bytes=batch * _inference_peak(layers, input_shape) * BYTES_PER_VALUE,
    )


def _inference_peak(layers: list[CheckedLayer], input_shape: Shape) -> int:
    """The most values alive at once in a forward pass without gradients: while a layer runs, its
    inputs, its output and every earlier output a later layer still needs (a residual's shortcut,
    an Inception block's branches)."""
    last_use = {NETWORK_INPUT: 0}
    for position, cl in enumerate(layers):
        for name in cl.inputs:
            last_use[name] = position
    size = {NETWORK_INPUT: _numel(input_shape), **{cl.name: _numel(cl.output_shape) for cl in layers}}
    live = {NETWORK_INPUT}
    peak = size[NETWORK_INPUT]
    for position, cl in enumerate(layers):
        live.add(cl.name)
        # what the layer keeps besides its output (attention maps) lives while it runs
        peak = max(peak, sum(size[name] for name in live) + cl.kept_elements)
        live = {name for name in live if last_use.get(name, len(layers)) > position}
    return peak
