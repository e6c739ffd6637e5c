"""From a CheckedNet to Keras 3 source: a function building a functional keras.Model,
channels-last, with explicit padding as ZeroPadding2D (or -inf padding before max pooling),
TensorFlow 'same' as 'same', and a Permute before Flatten so features keep PyTorch's order."""

from __future__ import annotations

from dataclasses import dataclass, field

from netspec.analysis.checker import CheckedLayer, CheckedNet
from netspec.codegen.render import LINE_LENGTH, environment, header_context, module_name, py, wrap_call
from netspec.errors import Problem, SpecError
from netspec.layers import LAYER_REGISTRY, fmt_shape
from netspec.layers.base import NETWORK_INPUT, channels_last
from netspec_keras.functions import FunctionBuilder, KerasFunction, assign, repeated
from netspec_keras.lowering import FUSED_ACTIVATION, Lowering, lower
from netspec_keras.names import HELPER_LAYERS

_env = environment("netspec_keras")


@dataclass
class Step:
    expr: str
    shape: str
    target: str = "x"  # the variable it assigns: `x` along a chain, the layer's name in a graph
    args: str = "x"  # what the layer is called on
    raw: bool = False  # `expr` is whole lines (a builder function's call, a loop of them), written as they are

    def statement(self, indent: int = 4) -> str:
        """``target = Layer(...)(args)  # shape``, with a long layer or argument list on lines of their own."""
        if self.raw:
            return self.expr
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
    functions: list[KerasFunction] = field(default_factory=list)  # a builder function per module, inner first
    lowerings: list[Lowering] = field(default_factory=list)  # every layer's


def hwc(shape) -> str:
    """A shape as Keras sees it, channels last."""
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


def _macro(layers_module, layer_type: str):
    macro = getattr(layers_module, layer_type, None)
    if macro is None:
        raise NotImplementedError(f"the keras backend has no rendering for layer type '{layer_type}' "
                                  "(add a macro to netspec_keras/templates/layers.py.j2)")
    return macro


def layer_steps(layers_module, cl: CheckedLayer, lowering: Lowering, layer, resolved: dict, args: str,
                target: str, shape: str) -> list[Step]:
    """One spec layer as Keras calls: its lowering's layers, its own (``layer`` and ``resolved``:
    its values, some of them a builder function's arguments), and its activation where Keras'
    layer does not take it."""
    steps = []
    for expr in lowering.before:
        steps.append(Step(expr, "", target, args))
        args = target
    extra = dict(lowering.macro_values)
    activation = getattr(cl.layer, "activation", None)
    if activation:
        extra["activation"] = _activation_name(layers_module, activation)
    expr = str(_macro(layers_module, cl.type)(layer, resolved, extra)).strip()
    if activation and not isinstance(cl.layer, FUSED_ACTIVATION):  # an activation layer of its own
        steps.append(Step(expr, "", target, args))
        expr = f"keras.layers.Activation({py(extra['activation'])}, name={lowering.name('_act')})"
        args = target
    steps.append(Step(expr, shape, target, args))
    return steps


def plan(net: CheckedNet) -> KerasPlan:
    _check_helper_names(net)
    result = KerasPlan(function_name=f"build_{module_name(net.spec.name)}")
    layers_module = _env.get_template("layers.py.j2").module
    graph = not net.spec.is_chain  # then each layer's output is a variable named after it
    result.output_layers = {cl.name: cl.name + "_act" for cl in net.layers
                            if getattr(cl.layer, "activation", None) and not isinstance(cl.layer, FUSED_ACTIVATION)}
    top_level: dict[str, str] = {}  # the scoped output of a module use -> the use's name

    functions: set[str] = set()  # the builder functions' names, which no variable may hide

    def var(name: str) -> str:  # a scoped layer (layer1.0.conv1, block1-0.f) is the variable layer1_0_conv1
        if name == NETWORK_INPUT or not graph:
            return "x"
        variable = top_level.get(name, name).replace(".", "_").replace("-", "_")
        return f"{variable}_" if variable in functions else variable

    if graph:
        _check_variables(net, var)

    def apply(cl: CheckedLayer) -> None:
        target = var(cl.name)
        args = var(cl.inputs[0]) if len(cl.inputs) == 1 else f"[{', '.join(map(var, cl.inputs))}]"
        lowering = lower(cl)
        result.lowerings.append(lowering)
        result.steps += layer_steps(layers_module, cl, lowering, cl.layer, cl.resolved, args, target,
                                    hwc(cl.output_shape))

    expansion = net.source.loaded.modules
    if expansion is None:
        for cl in net.layers:
            apply(cl)
    else:  # a builder function per module, called by the stacking code as keras-applications does
        def statements(cl, lowering, layer, resolved, args, target, indent, shape) -> list[str]:
            steps = layer_steps(layers_module, cl, lowering, layer, resolved, args, target, shape)
            return [" " * indent + step.statement(indent) for step in steps]

        builder = FunctionBuilder(net, statements, {result.function_name, "keras", "inputs", "x", *HELPER_LAYERS}, hwc)
        builder.build()
        functions = {function.name for function in builder.functions}
        result.functions = builder.functions
        result.lowerings += builder.lowerings
        for name, is_use in expansion.top_level:
            if not is_use:
                apply(net.layer(name))
                continue
            uses = [i for i in expansion.instances if i.path == name or i.group == name]
            if not uses:
                continue  # left out with `when: false`
            top_level[uses[-1].output] = name
            inputs = [var(i) for i in uses[0].inputs]
            target = var(name)
            if uses[0].group is None:
                call = assign(target, builder.calls[uses[0].path].expr(inputs, py(name)), 4)[4:]
                comment = f"  # {hwc(builder.output_of(uses[-1].output))}"
                if "\n" not in call and 4 + len(call) + len(comment) <= LINE_LENGTH:
                    call += comment
                result.steps.append(Step(call, "", target, raw=True))
            else:
                group = [(use.path.rsplit(".", 1)[-1], builder.calls[use.path]) for use in uses]
                lines = repeated(target, inputs, group, py(name), 4, set())
                result.steps.append(Step("\n".join(lines)[4:], "", target, raw=True))
    for lowering in result.lowerings:
        result.helpers |= lowering.helpers
        result.permutes = result.permutes or lowering.permutes
    outputs = [var(name) for name in net.output_names]
    result.returns = outputs[0] if len(outputs) == 1 else f"[{', '.join(outputs)}]"
    return result


def render(net: CheckedNet) -> tuple[str, KerasPlan]:
    keras_plan = plan(net)
    source = _env.get_template("module.py.j2").render(
        **header_context(net),
        input_shape=hwc(net.input_shape),
        input_shape_hwc=channels_last(net.input_shape),
        output_shape=hwc(net.output_shape),
        function_name=keras_plan.function_name,
        steps=keras_plan.steps,
        helpers=keras_plan.helpers,
        permutes=keras_plan.permutes,
        returns=keras_plan.returns,
        functions=keras_plan.functions,
    )
    return source, keras_plan
