"""From a CheckedNet to Keras 3 source: a function building a functional keras.Model,
channels-last, with explicit padding as ZeroPadding2D (or -inf padding before max pooling),
TensorFlow 'same' as 'same', and a Permute before Flatten so features keep PyTorch's order."""

from __future__ import annotations

from dataclasses import dataclass, field

from netspec.checker import CheckedLayer, CheckedNet
from netspec.errors import Problem, SpecError
from netspec.layers import LAYER_REGISTRY, fmt_shape
from netspec.layers.base import NETWORK_INPUT, channels_last
from netspec.render import LINE_LENGTH, environment, header_context, module_name, py, wrap_call
from netspec_keras.lowering import FUSED_ACTIVATION, lower

_env = environment("netspec_keras")


@dataclass
class Step:
    expr: str
    shape: str
    target: str = "x"  # the variable it assigns: `x` along a chain, the layer's name in a graph
    args: str = "x"  # what the layer is called on

    def statement(self, indent: int = 4) -> str:
        """``target = Layer(...)(args)  # shape``, with a long layer or argument list on lines of their own."""
        comment = f"  # {self.shape}" if self.shape else ""
        line = f"{self.target} = {self.expr}({self.args}){comment}"
        if indent + len(line) <= LINE_LENGTH:
            return line
        pad = " " * indent
        if indent + len(self.target) + len(self.expr) + 4 <= LINE_LENGTH:  # the arguments below
            return f"{self.target} = {self.expr}(\n{pad}    {self.args}\n{pad}){comment}"
        expr = wrap_call(self.expr, indent, len(self.target) + 3, len(self.args) + 2 + len(comment))
        last = expr.rsplit("\n", 1)[-1]
        if indent + len(last) + len(self.args) + 2 + len(comment) <= LINE_LENGTH and "\n" in expr:
            return f"{self.target} = {expr}({self.args}){comment}"
        return f"{self.target} = {expr}(\n{pad}    {self.args}\n{pad}){comment}"


@dataclass
class KerasPlan:
    function_name: str
    steps: list[Step] = field(default_factory=list)
    helpers: set[str] = field(default_factory=set)  # the helper layers (names.HELPER_LAYERS) the code calls
    permutes: str | None = None  # a Permute before a Flatten, to this channels-first layout ("C, H, W")
    returns: str = "x"
    # the Keras layer whose output is a spec layer's, where it is not the layer of that name (a
    # batch norm's activation shorthand is a layer of its own: "bn_act")
    output_layers: dict[str, str] = field(default_factory=dict)


def _hwc(shape) -> str:
    return fmt_shape(channels_last(shape))


def _check_helper_names(net: CheckedNet) -> None:
    """Keras layer names are one namespace: the input and helper layers (`<name>_pad`,
    `<name>_chw`) must not take a spec layer's name."""
    names = {cl.name for cl in net.layers}
    problems = []
    for cl in net.layers:
        taken = [h for h in (f"{cl.name}_pad", f"{cl.name}_chw", f"{cl.name}_act") if h in names]
        if cl.name == "input" or taken:
            clash = "the model input" if cl.name == "input" else f"a helper layer of '{cl.name}'"
            other = cl if cl.name == "input" else net.layer(taken[0])
            problems.append(Problem(f"the name '{other.name}' is also {clash} in Keras",
                                    net.source.location((*other.path, "name")), layer=other.name,
                                    hint=f"rename it, e.g. '{other.name}_'"))
    if problems:
        raise SpecError(problems)


def _check_variables(net: CheckedNet, var) -> None:
    """Two scoped layers must not become one variable (layer1.0_conv and layer1_0.conv)."""
    seen: dict[str, CheckedLayer] = {}
    for cl in net.layers:
        other = seen.setdefault(var(cl.name), cl)
        if other is not cl:
            raise SpecError([Problem(f"'{cl.name}' and '{other.name}' would be one variable, "
                                     f"'{var(cl.name)}', in the Keras code", cl.location, layer=cl.name,
                                     hint="rename one of them")])


def _activation_name(layers_module, name: str) -> str:
    """What Keras' ``activation=`` argument calls the shorthand (PyTorch's hardswish is Keras'
    hard_silu): the activation's own macro says."""
    # model_construct validates nothing and takes any field; pydantic's mypy plugin types it with Layer's own
    layer = LAYER_REGISTRY[name].model_construct(name=name, type=name)  # type: ignore[call-arg]
    return str(getattr(layers_module, name)(layer, {}, {}, as_string=True)).strip()


def plan(net: CheckedNet) -> KerasPlan:
    _check_helper_names(net)
    result = KerasPlan(function_name=f"build_{module_name(net.spec.name)}")
    layers_module = _env.get_template("layers.py.j2").module
    graph = not net.spec.is_chain  # then each layer's output is a variable named after it

    def var(name: str) -> str:  # a scoped layer (layer1.0.conv1, block1-0.f) is the variable layer1_0_conv1
        return "x" if name == NETWORK_INPUT or not graph else name.replace(".", "_").replace("-", "_")

    if graph:
        _check_variables(net, var)

    for cl in net.layers:
        target = var(cl.name)
        args = var(cl.inputs[0]) if len(cl.inputs) == 1 else f"[{', '.join(map(var, cl.inputs))}]"
        macro = getattr(layers_module, cl.type, None)
        if macro is None:
            raise NotImplementedError(f"the keras backend has no rendering for layer type '{cl.type}' "
                                      "(add a macro to netspec_keras/templates/layers.py.j2)")
        lowering = lower(cl)
        result.helpers |= lowering.helpers
        result.permutes = result.permutes or lowering.permutes
        for expr in lowering.before:
            result.steps.append(Step(expr, "", target, args))
            args = target
        extra = lowering.macro_values
        activation = getattr(cl.layer, "activation", None)
        if activation:
            extra["activation"] = _activation_name(layers_module, activation)
        expr = str(macro(cl.layer, cl.resolved, extra)).strip()
        if activation and not isinstance(cl.layer, FUSED_ACTIVATION):  # an activation layer of its own
            result.steps.append(Step(expr, "", target, args))
            expr = f"keras.layers.Activation({py(extra['activation'])}, name={py(cl.name + '_act')})"
            args = target
            result.output_layers[cl.name] = cl.name + "_act"
        result.steps.append(Step(expr, _hwc(cl.output_shape), target, args))
    outputs = [var(name) for name in net.output_names]
    result.returns = outputs[0] if len(outputs) == 1 else f"[{', '.join(outputs)}]"
    return result


def render(net: CheckedNet) -> tuple[str, KerasPlan]:
    keras_plan = plan(net)
    source = _env.get_template("module.py.j2").render(
        **header_context(net),
        input_shape=_hwc(net.input_shape),
        input_shape_hwc=channels_last(net.input_shape),
        output_shape=_hwc(net.output_shape),
        function_name=keras_plan.function_name,
        steps=keras_plan.steps,
        helpers=keras_plan.helpers,
        permutes=keras_plan.permutes,
        returns=keras_plan.returns,
    )
    return source, keras_plan
