"""From a CheckedNet to PyTorch source: builds the template context (which module goes where, what
padding the op takes itself and what goes to F.pad) and renders templates/module.py.j2."""

from __future__ import annotations

from dataclasses import dataclass, field

from netspec.check import CheckedLayer, CheckedNet
from netspec.errors import Problem, SpecError
from netspec.layers import fmt_shape
from netspec.render import class_name, environment, header_context, py

# Activation shorthand (`activation: relu` on conv2d/linear): a call in forward() for flat specs,
# a module inside nn.Sequential for blocks.
ACTIVATION_CALLS = {
    "relu": "torch.relu({})", "gelu": "F.gelu({})", "sigmoid": "torch.sigmoid({})", "tanh": "torch.tanh({})",
    "silu": "F.silu({})", "elu": "F.elu({})", "softmax": "torch.softmax({}, dim=1)",
}
ACTIVATION_MODULES = {
    "relu": "nn.ReLU()", "gelu": "nn.GELU()", "sigmoid": "nn.Sigmoid()", "tanh": "nn.Tanh()",
    "silu": "nn.SiLU()", "elu": "nn.ELU()", "softmax": "nn.Softmax(dim=1)",
}
# Padding beyond what the op takes symmetrically is applied first; max pooling pads with -inf so the
# border never wins, as TensorFlow does.
NEG_INF_PAD = {"maxpool2d"}

_env = environment("netspec_torch")


@dataclass
class Attribute:
    name: str
    constructor: str | None = None
    modules: list[str] | None = None


@dataclass
class Step:
    expr: str
    shape: str


@dataclass
class TorchPlan:
    """What the generated module holds, and where each spec layer's parameters live in it."""

    class_name: str
    attributes: list[Attribute] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    module_paths: dict[str, str] = field(default_factory=dict)  # layer name -> state_dict prefix
    uses_functional: bool = False


def split_padding(padding: tuple[int, int, int, int]) -> tuple[tuple[int, int], tuple[int, int, int, int] | None]:
    """(top, bottom, left, right) -> (symmetric (h, w) for the op, extra F.pad (l, r, t, b) or None)."""
    top, bottom, left, right = padding
    if top == bottom and left == right:
        return (top, left), None
    return (0, 0), (left, right, top, bottom)


def _constructor(layer: CheckedLayer, op_padding: tuple[int, int]) -> str:
    macro = getattr(_env.get_template("layers.py.j2").module, layer.type, None)
    if macro is None:
        raise NotImplementedError(f"the torch backend has no rendering for layer type '{layer.type}' "
                                  "(add a macro to netspec_torch/templates/layers.py.j2)")
    return str(macro(layer.layer, layer.resolved, op_padding)).strip()


def _pads(layer: CheckedLayer):
    if "padding" in layer.resolved:
        return split_padding(layer.resolved["padding"])
    return (0, 0), None


def plan(net: CheckedNet, reserved: set[str] = frozenset()) -> TorchPlan:
    _check_names(net, reserved)
    result = TorchPlan(class_name(net.spec.name))
    if net.spec.blocks is None:
        for cl in net.layers:
            op_padding, pre_pad = _pads(cl)
            result.attributes.append(Attribute(cl.name, _constructor(cl, op_padding)))
            arg = "x"
            if pre_pad is not None:
                value = ', value=float("-inf")' if cl.type in NEG_INF_PAD else ""
                arg = f"F.pad(x, {py(pre_pad)}{value})"
                result.uses_functional = True
            expr = f"self.{cl.name}({arg})"
            activation = getattr(cl.layer, "activation", None)
            if activation:
                expr = ACTIVATION_CALLS[activation].format(expr)
                result.uses_functional |= expr.startswith("F.")
            result.steps.append(Step(expr, fmt_shape(cl.output_shape)))
            result.module_paths[cl.name] = cl.name
        return result
    for block in net.spec.blocks:
        layers = [cl for cl in net.layers if cl.block == block.name]
        modules: list[str] = []
        for cl in layers:
            op_padding, pre_pad = _pads(cl)
            if pre_pad is not None:
                modules.append(f'nn.ConstantPad2d({py(pre_pad)}, float("-inf"))' if cl.type in NEG_INF_PAD
                               else f"nn.ZeroPad2d({py(pre_pad)})")
            result.module_paths[cl.name] = f"{block.name}.{len(modules)}"
            modules.append(_constructor(cl, op_padding))
            activation = getattr(cl.layer, "activation", None)
            if activation:
                modules.append(ACTIVATION_MODULES[activation])
        if len(modules) == 1:  # a lone module is kept as itself, as torchvision's `avgpool` is
            result.attributes.append(Attribute(block.name, modules[0]))
            result.module_paths[layers[0].name] = block.name
        else:
            result.attributes.append(Attribute(block.name, modules=modules))
        result.steps.append(Step(f"self.{block.name}(x)", fmt_shape(layers[-1].output_shape)))
    return result


def _check_names(net: CheckedNet, reserved: set[str]) -> None:
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


def render(net: CheckedNet, reserved: set[str] = frozenset()) -> tuple[str, TorchPlan]:
    torch_plan = plan(net, reserved)
    source = _env.get_template("module.py.j2").render(
        **header_context(net),
        input_shape=fmt_shape(net.input_shape),
        output_shape=fmt_shape(net.output_shape),
        class_name=torch_plan.class_name,
        attributes=torch_plan.attributes,
        steps=torch_plan.steps,
        uses_functional=torch_plan.uses_functional,
    )
    return source, torch_plan
