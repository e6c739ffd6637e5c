"""From a CheckedNet to PyTorch source: builds the template context (which module goes where, what
padding the op takes itself and what goes to F.pad) and renders templates/module.py.j2."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from netspec.analysis.checker import CheckedLayer, CheckedNet
from netspec.codegen.render import class_name, environment, header_context, ident, module_name, py
from netspec.errors import Problem, SpecError
from netspec.files.weights import sequence_parts, state_prefixes
from netspec.layers import LAYER_REGISTRY, fmt_shape
from netspec.layers.base import NETWORK_INPUT
from netspec_torch.arguments import constructor_params, symbolic_fields
from netspec_torch.classes import ClassBuilder, numbered, sequential_of
from netspec_torch.imports import HELPERS_USING_FUNCTIONAL, need, recording

_env = environment("netspec_torch")
_env.globals["need"] = need


@dataclass
class Attribute:
    name: str
    constructor: str | None = None
    modules: list[str] | None = None


@dataclass
class Step:
    expr: str
    shape: str
    target: str = "x"  # the variable it assigns: `x` along a chain, the layer's name in a graph


@dataclass
class TorchPlan:
    """What the generated module holds, and where each spec layer's parameters live in it."""

    class_name: str
    builder: str  # the function that builds it, named after the spec as torchvision's resnet50()
    attributes: list[Attribute] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    module_paths: dict[str, str] = field(default_factory=dict)  # layer name -> state_dict prefix
    returns: str = "x"
    classes: list = field(default_factory=list)  # netspec_torch.classes.GeneratedClass, inner first
    arguments: dict[str, int] = field(default_factory=dict)  # the class's constructor arguments and defaults
    symbols: dict[str, dict] = field(default_factory=dict)  # layer name -> its fields written as arguments

    @property
    def init_signature(self) -> str:
        return "__init__(" + ", ".join(["self", *self._parameters()]) + ")"

    @property
    def builder_signature(self) -> str:
        return f"{self.builder}(" + ", ".join(self._parameters()) + ")"

    @property
    def builder_call(self) -> str:
        return f"{self.class_name}(" + ", ".join(f"{ident(name)}={ident(name)}" for name in self.arguments) + ")"

    def _parameters(self) -> list[str]:
        return [f"{ident(name)}: int = {py(value)}" for name, value in self.arguments.items()]


def network_class_name(net: CheckedNet) -> str:
    """The spec's ``class_name`` (torchvision's ResNet), or its name in CamelCase."""
    return net.spec.class_name or class_name(net.spec.name)


def split_padding(padding: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...] | None]:
    """Per-side padding, (before, after) per spatial axis ((top, bottom, left, right) for an image)
    -> (the op's symmetric padding per axis, or zeros and an F.pad tuple, which lists the last axis
    first: (left, right, top, bottom))."""
    axes = [padding[i:i + 2] for i in range(0, len(padding), 2)]
    if all(before == after for before, after in axes):
        return tuple(before for before, _ in axes), None
    return (0,) * len(axes), tuple(side for axis in reversed(axes) for side in axis)


def _macro(layer_type: str):
    macro = getattr(_env.get_template("layers.py.j2").module, layer_type, None)
    if macro is None:
        raise NotImplementedError(f"the torch backend has no rendering for layer type '{layer_type}' "
                                  "(add a macro to netspec_torch/templates/layers.py.j2)")
    return macro


def _constructor(layer: CheckedLayer, op_padding: tuple[int, int], symbols: dict | None = None) -> str:
    """The layer's constructor; ``symbols`` are fields written as the class's arguments."""
    spec_layer = type(layer.layer).model_construct(**{**dict(layer.layer), **symbols}) if symbols else layer.layer
    return str(_macro(layer.type)(spec_layer, layer.resolved, op_padding)).strip()


def _activation(cl: CheckedLayer, call: str | None = None) -> str:
    """The layer's activation shorthand as a module, or with ``call`` its functional form applied
    to it: the activation's own macro renders both, for the layer's output (softmax's axis)."""
    name = cast(str, getattr(cl.layer, "activation", None))
    kind = LAYER_REGISTRY[name]
    # model_construct validates nothing and takes any field; pydantic's mypy plugin types it with Layer's own
    layer = kind.model_construct(name=name, type=name)  # type: ignore[call-arg]
    resolved = kind.resolved_for(cl.output_shape)  # type: ignore[attr-defined]  # every shorthand is elementwise
    return str(_macro(name)(layer, resolved, (0, 0), call=call)).strip()


def _pad_module(cl: CheckedLayer, pre_pad) -> str:
    rank = len(pre_pad) // 2
    if cl.layer.pad_value == 0:
        return f"nn.ZeroPad{rank}d({py(pre_pad)})"
    return f"nn.ConstantPad{rank}d({py(pre_pad)}, {_float(cl.layer.pad_value)})"


def _float(value: float) -> str:
    return f'float("{value}")' if value in (float("inf"), float("-inf")) else py(value)


def _pads(layer: CheckedLayer):
    if "padding" in layer.resolved:
        return split_padding(layer.resolved["padding"])
    return (0, 0), None


def plan(net: CheckedNet, reserved: frozenset[str] | set[str] = frozenset()) -> TorchPlan:
    _check_names(net, reserved)
    result = TorchPlan(network_class_name(net), module_name(net.spec.name))
    result.arguments = constructor_params(net)
    result.symbols = {cl.name: symbols for cl in net.layers
                      if (symbols := symbolic_fields(cl, net, result.arguments))}
    # merges are expressions in forward(), as torchvision writes `out += identity`; the rest are modules
    result.module_paths = {name: path for name, path in state_prefixes(net).items()
                           if not is_expression(net.layer(name))}
    if not net.spec.is_chain:
        return _graph_plan(net, result)
    if net.spec.blocks is None:
        for cl in net.layers:
            if is_expression(cl):
                result.steps.append(Step(layer_call(cl, ["x"], merge=True), fmt_shape(cl.output_shape)))
                continue
            op_padding, pre_pad = _pads(cl)
            result.attributes.append(Attribute(cl.name, _constructor(cl, op_padding, result.symbols.get(cl.name))))
            result.steps.append(Step(layer_call(cl, ["x"], pre_pad=pre_pad), fmt_shape(cl.output_shape)))
        return result
    for block in net.spec.blocks:
        layers = [cl for cl in net.layers if cl.block == block.name]
        modules: list[str] = []
        for cl in layers:
            if not called_as_module(cl):
                raise not_a_sequence_child(cl, "move it out of `blocks:` into a `layers:` spec")
            op_padding, pre_pad = _pads(cl)
            rendered: dict[str, Callable[..., str]]
            rendered = {"pad": lambda cl=cl, pre_pad=pre_pad: _pad_module(cl, pre_pad),
                        "layer": lambda cl=cl, op_padding=op_padding: _constructor(cl, op_padding,
                                                                                   result.symbols.get(cl.name)),
                        "activation": lambda cl=cl: _activation(cl)}
            modules += [rendered[part]() for part in sequence_parts(cl)]
        if len(modules) == 1:  # a lone module is kept as itself, as torchvision's `avgpool` is
            result.attributes.append(Attribute(block.name, modules[0]))
        else:
            result.attributes.append(Attribute(block.name, modules=modules))
        result.steps.append(Step(f"self.{block.name}(x)", fmt_shape(layers[-1].output_shape)))
    return result


def is_expression(cl: CheckedLayer) -> bool:
    """Whether forward() writes the layer as an expression of its inputs, with no module of its own:
    a merge (`add = bn2 + x`), or a layer type with an `_expression` macro (a chunk)."""
    return cl.layer.arity != (1, 1) or _expression_macro(cl.type) is not None


def _expression_macro(layer_type: str):
    return getattr(_env.get_template("layers.py.j2").module, f"{layer_type}_expression", None)


def _forward_macro(layer_type: str):
    """The macro that writes how forward() applies a layer other than as ``self.name(x)`` (a learned
    tensor, attention's (x, x, x) call), or None."""
    return getattr(_env.get_template("layers.py.j2").module, f"{layer_type}_forward", None)


def called_as_module(cl: CheckedLayer) -> bool:
    """Whether forward() applies the layer as ``self.name(x)``, as an ``nn.Sequential`` applies its children."""
    return not is_expression(cl) and _forward_macro(cl.type) is None


def not_a_sequence_child(cl: CheckedLayer, hint: str) -> SpecError:
    what = ("a learned tensor" if cl.layer.learned_tensor else "an expression of its input, with no module"
            if is_expression(cl) else "a module called with more than its input")
    return SpecError([Problem(f"{cl.type} is {what}, which an nn.Sequential cannot apply",
                              cl.location, layer=cl.name, hint=hint)])


def layer_call(cl: CheckedLayer, args: list[str], *, local: str | None = None, pre_pad=None,
               merge: bool = False, activation_module: bool = False) -> str:
    """forward()'s expression for one layer: a merge over its inputs, or its module (``self.<local>``)
    on its padded input, wrapped in its activation shorthand; or the shorthand's module alone."""
    if activation_module:
        # declared by the layer types that have one (sequence_parts asks for it only then)
        return _activation(cl)
    if merge:
        expression = _expression_macro(cl.type)
        if expression is not None:
            return str(expression(cl.layer, cl.resolved, args)).strip()
        return str(_macro(cl.type)(cl.layer, cl.resolved, (0, 0), call=args)).strip()
    arg = args[0]
    if pre_pad is not None:
        value = f", value={_float(cl.layer.pad_value)}" if cl.layer.pad_value else ""
        arg = f"F.pad({arg}, {py(pre_pad)}{value})" + need("F")
    forward = _forward_macro(cl.type)
    if forward is not None:
        return str(forward(cl.layer, cl.resolved, f"self.{local or cl.name}", arg)).strip()
    expr = f"self.{local or cl.name}({arg})"
    activation = getattr(cl.layer, "activation", None)
    return _activation(cl, call=expr) if activation else expr


def _graph_plan(net: CheckedNet, result: TorchPlan) -> TorchPlan:
    """A graph's forward(): one variable per layer (or module use), named after it, so that a
    residual reads as `add = bn2 + relu1` and branches as their own lines; module uses become
    instances of their generated classes (netspec_torch.classes)."""
    top_level = {}  # the scoped output of a module use -> the use's name
    items: list[tuple[Any, Any]] = [(None, cl) for cl in net.layers]  # or (a module's uses, the use's name)
    expansion = net.source.loaded.modules
    if expansion is not None:
        builder = ClassBuilder(net, _render_symbolic, layer_call, _pads, called_as_module, not_a_sequence_child,
                               is_expression)
        builder.build()
        result.classes = builder.classes
        items = []
        for name, is_use in expansion.top_level:
            if not is_use:
                items.append((None, net.layer(name)))
                continue
            uses = [i for i in expansion.instances if i.path == name or i.group == name]
            if not uses:
                continue  # left out with `when: false`
            items.append((uses, name))
            top_level[uses[-1].output] = name

    def var(name: str) -> str:
        return "x" if name == NETWORK_INPUT else top_level.get(name, name)

    for uses, item in items:
        if uses is not None:
            constructions = [builder.constructions[use.path] for use in uses]
            if uses[0].group is None:
                result.attributes.append(Attribute(item, constructions[0].expr()))
            else:
                children = [(use.path.rsplit(".", 1)[-1], c.expr()) for use, c in zip(uses, constructions, strict=True)]
                if numbered(children):
                    result.attributes.append(Attribute(item, modules=[expr for _, expr in children]))
                else:  # named repetitions (names: denselayer{n})
                    result.attributes.append(Attribute(item, sequential_of(children)))
            output = net.layer(uses[-1].output).output_shape if uses[-1].output in {cl.name for cl in net.layers} \
                else net.input_shape
            use_args = ", ".join(var(name) for name in uses[0].inputs)
            result.steps.append(Step(f"self.{item}({use_args})", fmt_shape(output), target=item))
            continue
        cl = item
        args = [var(name) for name in cl.inputs]
        if is_expression(cl):
            expr = layer_call(cl, args, merge=True)
        else:
            op_padding, pre_pad = _pads(cl)
            result.attributes.append(Attribute(cl.name, _constructor(cl, op_padding, result.symbols.get(cl.name))))
            expr = layer_call(cl, args, pre_pad=pre_pad)
        result.steps.append(Step(expr, fmt_shape(cl.output_shape), target=cl.name))
    outputs = [var(name) for name in net.output_names]
    result.returns = outputs[0] if len(outputs) == 1 else f"({', '.join(outputs)})"
    return result


def _render_symbolic(cl: CheckedLayer, layer, resolved, pad) -> str:
    """A layer's constructor inside a generated class, where some values are the class's arguments."""
    return str(_macro(cl.type)(layer, resolved, pad)).strip()


def _check_names(net: CheckedNet, reserved: frozenset[str] | set[str]) -> None:
    problems = []
    names = [(cl.name, (*cl.path, "name"), cl.name) for cl in net.layers] if net.spec.blocks is None else [
        (b.name, ("blocks", i, "name"), None) for i, b in enumerate(net.spec.blocks)]
    for name, path, layer in names:
        if name in reserved:
            problems.append(Problem(
                f"the name '{name}' clashes with an attribute of torch.nn.Module", net.source.location(path),
                layer=layer, hint=f"rename it, e.g. '{name}_'"))
    if problems:
        raise SpecError(problems)


def render(net: CheckedNet, reserved: frozenset[str] | set[str] = frozenset()) -> tuple[str, TorchPlan]:
    with recording() as needed:  # the imports the rendered expressions declare
        torch_plan = plan(net, reserved)
        source = _env.get_template("module.py.j2").render(
            **header_context(net),
            input_shape=fmt_shape(net.input_shape),
            output_shape=fmt_shape(net.output_shape),
            class_name=torch_plan.class_name,
            attributes=torch_plan.attributes,
            steps=torch_plan.steps,
            returns=torch_plan.returns,
            classes=torch_plan.classes,
            init_signature=torch_plan.init_signature,
            builder_signature=torch_plan.builder_signature,
            builder_call=torch_plan.builder_call,
            uses_functional="F" in needed or bool(needed & HELPERS_USING_FUNCTIONAL),
            helpers=needed,
            uses_ordered_dict="OrderedDict" in needed,
        )
    return source, torch_plan
