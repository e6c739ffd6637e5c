"""`netspec import` for saved ``torch.export`` programs (``.pt2``): the program's module tree
rebuilt as modules that netspec_torch.importer reads as it reads a live model.

A program keeps, for each node, the module that made it (``nn_module_stack``), and
``torch.export.unflatten`` gives that tree back, each module's forward as a graph of ATen
operations that calls its children. Rebuilding it takes two rules:

- a module of a catalogue class (``nn.Conv2d``) is saved as the one operation it ran
  (``aten.conv2d`` with its stride and padding): that operation's arguments and the module's
  tensors make the module again;
- any other module keeps its graph, each ATen operation written as the torch function it came from
  (``aten.add.Tensor`` as ``x + y``), so the importer finds the residuals, concats and layouts it
  finds in Python code.

Nothing of the rebuild is trusted: the round trip compares the spec's model with the program
itself (``ExportedProgram.module()``), not with the rebuild. What an inference program does not
record (the rate of a stochastic depth, which inference skips) is said in the spec's header.
"""

from __future__ import annotations

import operator
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from netspec.errors import ModelImportError, counted


def load_program(path: Path) -> Any:
    """The ExportedProgram saved in ``path``, loaded without running pickled code: every tensor is
    read with ``weights_only=True``, and a program that holds other Python objects is refused."""
    from unittest import mock

    if not path.is_file():
        raise ModelImportError.single(f"no such file: {path}")
    weights_only_load = torch.load

    def tensors_only(*args: Any, **kwargs: Any) -> Any:
        return weights_only_load(*args, **{**kwargs, "weights_only": True})

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise ModelImportError.single(f"{path} holds Python objects that only pickle can load; netspec import "
                                      "does not run code from a file", hint="export the model without them")

    import pickle

    from torch.export.pt2_archive import _package

    class NoPickle:
        loads = staticmethod(refuse)

    import logging

    logging.disable(logging.WARNING)  # torch logs a failed read with its traceback; the message below says it
    try:
        with mock.patch("torch.load", tensors_only), mock.patch.object(torch._C, "_pickle_load_obj", refuse), \
                mock.patch.object(_package, "pickle", NoPickle):
            program = torch.export.load(str(path))
    except ModelImportError:
        raise
    except pickle.UnpicklingError:
        raise refuse() from None
    except Exception as error:  # not a zip archive, a program of another torch version
        first = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
        raise ModelImportError.single(f"cannot read {path} as a torch.export program ({type(error).__name__}: "
                                      f"{first})", hint=SAVE_HINT) from None
    finally:
        logging.disable(logging.NOTSET)
    _refuse_training(program, path)
    return program


SAVE_HINT = "save it with torch.export.save(torch.export.export(model.eval(), (x,)), 'model.pt2')"


def _refuse_training(program: Any, path: Path) -> None:
    """A program exported in training mode computes batch statistics and drops out: not the
    inference the spec's model is compared in."""
    for node in program.graph.nodes:
        if node.op != "call_function":
            continue
        name = _name(node.target)
        given = _arguments(node.target, tuple(node.args), dict(node.kwargs)) if name in ("batch_norm", "dropout") \
            else {}
        if name == "_native_batch_norm_legit" or given.get("training") or given.get("train"):
            raise ModelImportError.single(f"{path} was exported from a model in training mode ({name} of "
                                          "training); netspec import reads a model's inference", hint=SAVE_HINT)


def program_input(program: Any) -> tuple[int | None, tuple[int, ...]]:
    """The batch size the program was exported for (None where it takes any) and the shape of
    one example of its one input."""
    names = program.graph_signature.user_inputs
    outputs = program.graph_signature.user_outputs
    if len(names) != 1 or len(outputs) != 1:
        raise ModelImportError.single(f"the program takes {counted(len(names), 'input')} and returns "
                                      f"{counted(len(outputs), 'output')}; a spec has one of each")
    node = next(n for n in program.graph.nodes if n.op == "placeholder" and n.name == names[0])
    shape = tuple(getattr(node.meta.get("val"), "shape", ()))
    if len(shape) < 2 or not all(isinstance(d, int) for d in shape[1:]):
        shown = "x".join(str(d) if isinstance(d, int) else "?" for d in shape[1:])
        raise ModelImportError.single(f"the program's input is {shown or 'not an image'} (? a size it was exported "
                                      "to vary); netspec import reads a program whose examples have one shape "
                                      "(its batch may vary)", hint="export it without dynamic_shapes for those axes")
    return (int(shape[0]) if isinstance(shape[0], int) else None), tuple(int(d) for d in shape[1:])


# --- ATen operations back to the torch functions the importer reads -----------------------------

def _name(target: Any) -> str:
    """``aten.add_.Tensor`` -> ``add``: the operation, its overload and in-place form aside."""
    packet = getattr(target, "_overloadpacket", None)
    name = getattr(packet, "__name__", "") if packet is not None else ""
    return name.rstrip("_") if name.endswith("_") and not name.endswith("__") else name


def _arguments(target: Any, args: tuple, kwargs: dict) -> dict[str, Any]:
    """The call's arguments by the operation's schema names, defaults filled in."""
    schema = target._schema
    given: dict[str, Any] = {}
    for position, argument in enumerate(schema.arguments):
        if position < len(args):
            given[argument.name] = args[position]
        elif argument.name in kwargs:
            given[argument.name] = kwargs[argument.name]
        elif argument.has_default_value():
            given[argument.name] = argument.default_value
    return given


Call = tuple[str, Any, tuple, dict]  # an fx node's op, target, args, kwargs

ACTIVATIONS: dict[str, Any] = {"relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh, "silu": F.silu,
                               "hardswish": F.hardswish, "hardsigmoid": F.hardsigmoid}


def _torch_call(target: Any, args: tuple, kwargs: dict) -> Call | None:
    """The torch-level call an ATen operation of a module's graph is, or None to keep it."""
    name = _name(target)
    if not name:
        return None
    given = _arguments(target, args, kwargs)
    x = args[0] if args else None
    if name in ACTIVATIONS:
        return "call_function", ACTIVATIONS[name], (x,), {}
    if name == "hardtanh" and (given.get("min_val"), given.get("max_val")) == (0.0, 6.0):
        return "call_function", F.relu6, (x,), {}
    if name == "gelu":
        approximate = given.get("approximate", "none")
        return "call_function", F.gelu, (x,), {} if approximate == "none" else {"approximate": approximate}
    if name in ("add", "mul") and given.get("alpha", 1) == 1 and len(args) == 2:
        return "call_function", operator.add if name == "add" else operator.mul, tuple(args), {}
    if name == "flatten":
        return "call_function", torch.flatten, (x, given["start_dim"], given["end_dim"]), {}
    if name == "cat":
        return "call_function", torch.cat, (list(given["tensors"]), given["dim"]), {}
    if name == "adaptive_avg_pool2d":
        return "call_function", F.adaptive_avg_pool2d, (x, list(given["output_size"])), {}
    if name == "mean" and given.get("dtype") is None and given.get("dim") is not None:
        return "call_function", torch.mean, (x,), {"dim": list(given["dim"]), "keepdim": given["keepdim"]}
    if name == "max_pool2d" and set(given["dilation"]) == {1}:
        return "call_function", F.max_pool2d, (x,), {
            "kernel_size": list(given["kernel_size"]), "stride": list(given["stride"] or given["kernel_size"]),
            "padding": list(given["padding"]), "ceil_mode": given["ceil_mode"]}
    if name == "avg_pool2d" and given.get("divisor_override") is None:
        return "call_function", F.avg_pool2d, (x,), {
            "kernel_size": list(given["kernel_size"]), "stride": list(given["stride"] or given["kernel_size"]),
            "padding": list(given["padding"]), "ceil_mode": given["ceil_mode"],
            "count_include_pad": given["count_include_pad"]}
    if name == "dropout":
        return "call_function", F.dropout, (x,), {"p": given["p"]}
    if name == "permute":
        return "call_function", torch.permute, (x, list(given["dims"])), {}
    if name == "transpose":
        return "call_function", torch.transpose, (x, given["dim0"], given["dim1"]), {}
    if name in ("reshape", "view"):
        return "call_method", "reshape", (x, *given.get("shape", given.get("size", ()))), {}
    if name == "select" and given["dim"] == 1:
        return "call_function", operator.getitem, (x, (slice(None), given["index"])), {}
    if name == "expand":
        return "call_method", "expand", (x, *given["size"]), {}
    if name == "chunk":
        return "call_method", "chunk", (x, given["chunks"], given["dim"]), {}
    return None


def _shape(node: Any) -> tuple[int, ...]:
    return tuple(getattr(node.meta.get("val"), "shape", ())) if isinstance(node, fx.Node) else ()


# a library function found in a program's operations: its last node -> (the function, its
# arguments, the nodes before the last that it replaces)
Found = dict[fx.Node, tuple[Callable, tuple, list[fx.Node]]]


def _channel_shuffles(graph: fx.Graph) -> Found:
    """torchvision's channel_shuffle as a program saves it: N×C×H×W viewed as N×g×(C/g)×H×W, the
    two group axes swapped, and viewed back."""
    found: Found = {}
    for node in graph.nodes:
        if node.op != "call_function" or _name(node.target) not in ("view", "reshape"):
            continue
        inside, current = [node], node.args[0]
        while isinstance(current, fx.Node) and _name(current.target) in ("contiguous", "clone"):
            inside.append(current)
            current = current.args[0]
        swap = current
        if not isinstance(swap, fx.Node) or _name(swap.target) != "transpose" or set(swap.args[1:3]) != {1, 2}:
            continue
        split = swap.args[0]
        if not isinstance(split, fx.Node) or _name(split.target) not in ("view", "reshape"):
            continue
        source = split.args[0]
        if not isinstance(source, fx.Node):
            continue
        before, grouped, after = _shape(source), _shape(split), _shape(node)
        if len(before) == 4 and len(grouped) == 5 and after == before and \
                grouped[1] * grouped[2] == before[1] and grouped[3:] == before[2:] and \
                all(len(n.users) == 1 for n in [split, swap, *inside[1:]]):
            found[node] = (_library_function("channel_shuffle"), (source, int(grouped[1])),
                           [split, swap, *inside[1:]])
    return found


def _patch_merges(graph: fx.Graph) -> Found:
    """torchvision's Swin patch merging (``_patch_merging_pad``) as a program saves it: an N×H×W×C
    image padded to even sides, its four pixels of each 2×2 block taken with strided slices and
    put side by side along the features."""
    found: Found = {}
    corners = [(0, 0), (1, 0), (0, 1), (1, 1)]  # (row, column) of each part, in torchvision's order
    for node in graph.nodes:
        if node.op != "call_function" or _name(node.target) != "cat" or len(node.args[0]) != 4 or \
                node.args[1] not in (-1, 3):
            continue
        inside: list[fx.Node] = []
        sources: set[Any] = set()
        parts: Any = node.args[0]
        for part, (row, column) in zip(parts, corners, strict=True):
            if not isinstance(part, fx.Node) or _name(part.target) != "slice":
                break
            rows = part.args[0]
            if not isinstance(rows, fx.Node) or _name(rows.target) != "slice" or \
                    tuple(part.args[1:]) != (2, column, 2**63 - 1, 2) or tuple(rows.args[1:]) != (1, row, 2**63 - 1, 2):
                break
            inside += [part, rows]
            sources.add(rows.args[0])
        else:
            padded = sources.pop() if len(sources) == 1 else None
            if isinstance(padded, fx.Node) and _name(padded.target) == "pad":
                image = _shape(padded.args[0])
                amounts: Any = padded.args[1]
                if len(image) == 4 and list(amounts) == [0, 0, 0, image[2] % 2, 0, image[1] % 2]:
                    from torchvision.models.swin_transformer import _patch_merging_pad

                    found[node] = (_patch_merging_pad, (padded.args[0],), [padded, *inside])
    return found


def _library_function(name: str) -> Callable:
    from netspec_torch.importer import library_functions

    return next(f for f in library_functions() if f.__name__ == name)


# --- catalogue modules, made again from the one operation each ran ------------------------------

def _tensors(module: nn.Module, node: fx.Node, given: dict[str, Any]) -> dict[str, torch.Tensor | None]:
    """The module's tensors the operation takes, by the schema's names (weight, bias, ...)."""
    found: dict[str, torch.Tensor | None] = {}
    for key, value in given.items():
        if isinstance(value, fx.Node) and value.op == "get_attr":
            found[key] = _attribute(module, str(value.target))
        elif value is None:
            found[key] = None
    return found


def _attribute(module: nn.Module, target: str) -> torch.Tensor:
    holder, _, name = target.rpartition(".")
    return getattr(module.get_submodule(holder) if holder else module, name)


def _conv(given: dict[str, Any], tensors: dict) -> nn.Module:
    weight, bias = tensors["weight"], tensors.get("bias")
    groups = int(given["groups"])
    padding = given["padding"] if isinstance(given["padding"], str) else tuple(given["padding"])
    conv = nn.Conv2d(weight.shape[1] * groups, weight.shape[0], tuple(weight.shape[2:]), tuple(given["stride"]),
                     padding, tuple(given["dilation"]), groups, bias=bias is not None)
    return _with(conv, weight=weight, bias=bias)


def _batchnorm(dims: int) -> Callable[[dict[str, Any], dict], nn.Module]:
    def build(given: dict[str, Any], tensors: dict) -> nn.Module:
        mean, var = tensors.get("running_mean"), tensors.get("running_var")
        if mean is None or var is None or given["training"]:
            raise ValueError("a batch norm that computes its statistics in inference")
        kind = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}[dims]
        norm = kind(mean.shape[0], eps=given["eps"], momentum=given["momentum"],
                    affine=tensors.get("weight") is not None)
        return _with(norm, weight=tensors.get("weight"), bias=tensors.get("bias"), running_mean=mean, running_var=var)
    return build


def _linear(given: dict[str, Any], tensors: dict) -> nn.Module:
    weight, bias = tensors["weight"], tensors.get("bias")
    return _with(nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None), weight=weight, bias=bias)


def _layernorm(given: dict[str, Any], tensors: dict) -> nn.Module:
    weight, bias = tensors.get("weight"), tensors.get("bias")
    norm = nn.LayerNorm(list(given["normalized_shape"]), eps=given["eps"], elementwise_affine=weight is not None,
                        bias=bias is not None)
    return _with(norm, weight=weight, bias=bias)


def _groupnorm(given: dict[str, Any], tensors: dict) -> nn.Module:
    weight, bias = tensors.get("weight"), tensors.get("bias")
    if (weight is None) != (bias is None):
        raise ValueError("a group norm with a scale and no shift")
    channels = weight.shape[0] if weight is not None else None
    if channels is None:
        raise ValueError("a group norm without weights, whose channels the program does not say")
    return _with(nn.GroupNorm(given["num_groups"], channels, eps=given["eps"]), weight=weight, bias=bias)


def _with(module: nn.Module, **tensors: torch.Tensor | None) -> nn.Module:
    """``module`` holding the program's tensors (so that the rebuild's state dict is the program's);
    a name may be dotted (``out_proj.weight``)."""
    with torch.no_grad():
        for name, tensor in tensors.items():
            if tensor is not None:
                _attribute(module, name).copy_(tensor)
    return module


class Leaf(NamedTuple):
    """How a catalogue class is saved in a program: the operations it runs, in order (layouts
    around a norm, for LayerNorm2d), the one of them whose call holds its settings, and how the
    module is made from that call's arguments and the module's tensors."""

    operations: tuple[str, ...]
    build: Callable[[dict[str, Any], dict], nn.Module]
    main: int = 0


def _layernorm2d(given: dict[str, Any], tensors: dict) -> nn.Module:
    from torchvision.models.convnext import LayerNorm2d

    weight, bias = tensors.get("weight"), tensors.get("bias")
    norm = LayerNorm2d(list(given["normalized_shape"]), eps=given["eps"], elementwise_affine=weight is not None,
                       bias=bias is not None)
    return _with(norm, weight=weight, bias=bias)


def _pool(kind: type[nn.Module]) -> Callable[[dict[str, Any], dict], nn.Module]:
    def build(given: dict[str, Any], tensors: dict) -> nn.Module:
        settings: dict[str, Any] = {"kernel_size": tuple(given["kernel_size"]),
                                    "stride": tuple(given["stride"]) or None, "padding": tuple(given["padding"]),
                                    "ceil_mode": given["ceil_mode"]}
        if kind is nn.MaxPool2d:
            return nn.MaxPool2d(**settings, dilation=tuple(given["dilation"]))
        return nn.AvgPool2d(**settings, count_include_pad=given["count_include_pad"],
                            divisor_override=given["divisor_override"])
    return build


def _permute(given: dict[str, Any], tensors: dict) -> nn.Module:
    from torchvision.ops.misc import Permute

    return Permute(list(given["dims"]))


# the catalogue's classes (netspec_torch.importer.MODULE_LAYERS) that a program's graph gives back
LEAF_MODULES: dict[str, Leaf] = {
    "Conv2d": Leaf(("conv2d",), _conv), "Linear": Leaf(("linear",), _linear),
    "BatchNorm1d": Leaf(("batch_norm",), _batchnorm(1)), "BatchNorm2d": Leaf(("batch_norm",), _batchnorm(2)),
    "LayerNorm": Leaf(("layer_norm",), _layernorm), "GroupNorm": Leaf(("group_norm",), _groupnorm),
    "LayerNorm2d": Leaf(("permute", "layer_norm", "permute"), _layernorm2d, main=1),
    "ReLU": Leaf(("relu",), lambda g, t: nn.ReLU()), "ReLU6": Leaf(("hardtanh",), lambda g, t: nn.ReLU6()),
    "SiLU": Leaf(("silu",), lambda g, t: nn.SiLU()), "Sigmoid": Leaf(("sigmoid",), lambda g, t: nn.Sigmoid()),
    "Tanh": Leaf(("tanh",), lambda g, t: nn.Tanh()), "Hardswish": Leaf(("hardswish",), lambda g, t: nn.Hardswish()),
    "Hardsigmoid": Leaf(("hardsigmoid",), lambda g, t: nn.Hardsigmoid()),
    "LeakyReLU": Leaf(("leaky_relu",), lambda g, t: nn.LeakyReLU(g["negative_slope"])),
    "ELU": Leaf(("elu",), lambda g, t: nn.ELU(g["alpha"])),
    "GELU": Leaf(("gelu",), lambda g, t: nn.GELU(approximate=g["approximate"])),
    "Dropout": Leaf(("dropout",), lambda g, t: nn.Dropout(g["p"])),
    "Flatten": Leaf(("flatten",), lambda g, t: nn.Flatten(g["start_dim"], g["end_dim"])),
    "Permute": Leaf(("permute",), _permute),
    "MaxPool2d": Leaf(("max_pool2d",), _pool(nn.MaxPool2d)), "AvgPool2d": Leaf(("avg_pool2d",), _pool(nn.AvgPool2d)),
    "AdaptiveAvgPool2d": Leaf(("adaptive_avg_pool2d",), lambda g, t: nn.AdaptiveAvgPool2d(tuple(g["output_size"]))),
}
def _stochastic_depth() -> nn.Module:
    from torchvision.ops import StochasticDepth

    return StochasticDepth(0.0, "row")


# what inference skips (its graph is empty): the module made again, and what the program lost
SKIPPED_MODULES: dict[str, tuple[Callable[[], nn.Module], str]] = {
    "Identity": (nn.Identity, ""),
    "StochasticDepth": (_stochastic_depth, "a stochastic depth's rate, written as 0"),
    "DropPath": (_stochastic_depth, "a stochastic depth's rate, written as 0"),
}


# --- the rebuild --------------------------------------------------------------------------------

class Rebuild:
    """The module tree of an ExportedProgram as nn.Modules (see the module's docstring)."""

    def __init__(self, program: Any) -> None:
        self.program = program
        self.classes: dict[str, str] = {}  # module path -> its class's qualified name
        for node in program.graph.nodes:
            for path, kind in (node.meta.get("nn_module_stack") or {}).values():
                self.classes.setdefault(path, kind if isinstance(kind, str) else
                                        f"{kind.__module__}.{kind.__qualname__}")
        self.lost: dict[str, list[str]] = {}  # what the program does not record -> where
        self.modules = {entry.fqn for entry in program.module_call_graph}  # the model's modules
        self.joined: dict[str, list[int]] = {}  # modules that concatenate their inputs first: the order

    def model(self) -> nn.Module:
        try:
            unflattened = torch.export.unflatten(self.program)
        except Exception as error:  # a program whose module calls torch.export cannot separate
            raise ModelImportError.single(f"the program's module tree cannot be recovered ({type(error).__name__}: "
                                          f"{str(error).strip()[:200]})",
                                          hint="import the Python callable that builds the model") from None
        return self._module(unflattened, "")

    def _kind(self, path: str) -> tuple[str, str]:
        """The module's class name and package (``Conv2d``, ``torch.nn.modules.conv``)."""
        qualified = self.classes.get(path, "")
        package, _, name = qualified.rpartition(".")
        return name, package

    def _module(self, module: nn.Module, path: str) -> nn.Module:
        from netspec_torch.importer import LAYER_PACKAGES, MODULE_LAYERS

        kind, package = self._kind(path)
        graph = getattr(module, "graph", None)
        where = path or "the model"
        if graph is None or not len(graph.nodes):  # never called itself (a ModuleList, a layer's parameters)
            children = {name: self._module(child, f"{path}.{name}" if path else name)
                        for name, child in module.named_children()}
            if not children and not _own_tensors(module) and path in self.modules:
                # a module without an operation in the program: unused, or a stochastic depth in inference
                self.lost.setdefault("modules that ran no operation (an identity, a stochastic depth in "
                                     "inference), left out", []).append(path)
            if children and all(name.isdigit() for name in children) and not _own_tensors(module):
                return nn.ModuleList(children.values())
            return _holder(module, children)
        from_catalogue = package.startswith(LAYER_PACKAGES)
        operations = [n for n in graph.nodes if n.op == "call_function"]
        if from_catalogue and kind in SKIPPED_MODULES and not operations:
            build, lost = SKIPPED_MODULES[kind]
            if lost:
                self.lost.setdefault(lost, []).append(path)
            return build()
        if from_catalogue and kind == "MultiheadAttention":
            return self._attention(module, graph, where)
        if from_catalogue and kind == "ShiftedWindowAttention":
            return self._window_attention(module, graph, where)
        if from_catalogue and kind in MODULE_LAYERS:  # a catalogue layer: made again from its call
            leaf = LEAF_MODULES.get(kind)
            saved = tuple(_name(n.target) or str(n.target) for n in operations)
            if leaf is None or saved != leaf.operations:
                ran = f"saved as {', '.join(saved[:4])}{', ...' if len(saved) > 4 else ''}" if saved else \
                    "saved without operations"
                raise ModelImportError.single(f"{where}: its {kind} ({ran}) cannot be read back from a program",
                                              hint="import the Python callable that builds the model")
            node = operations[leaf.main]
            given = _arguments(node.target, tuple(node.args), dict(node.kwargs))
            try:
                return leaf.build(given, _tensors(module, node, given))
            except (ValueError, KeyError, TypeError) as error:
                raise ModelImportError.single(f"{where}: its {kind} cannot be made again from the program "
                                              f"({error})") from None
        children = {name: self._module(child, f"{path}.{name}" if path else name)
                    for name, child in module.named_children()}
        return self._graph_module(module, graph, children, kind or "Module", path)

    def _graph_module(self, module: nn.Module, graph: fx.Graph, children: dict[str, nn.Module], kind: str,
                      path: str) -> nn.Module:
        """A module that keeps its graph, each operation the torch call it came from."""
        holder = _holder(module, children)
        for node in graph.nodes:  # constants the program lifted out of the code (lifted_tensor_0)
            if node.op == "get_attr" and "." not in str(node.target) and not hasattr(holder, str(node.target)):
                setattr(holder, str(node.target), getattr(module, str(node.target)))
        rewritten = fx.Graph()
        values: dict[fx.Node, Any] = {}
        placeholders = [n for n in graph.nodes if n.op == "placeholder"]
        joined = self._joined_input(graph, placeholders)
        functions = {**_channel_shuffles(graph), **_patch_merges(graph)}
        skipped = {n for _, _, inside in functions.values() for n in inside}
        for node in graph.nodes:
            if node in skipped:
                continue
            if node in functions:
                function, function_args, _ = functions[node]
                values[node] = rewritten.call_function(function, fx.node.map_arg(function_args, lambda n: values[n]))
                continue
            if joined is not None and node.op == "placeholder":
                if node is placeholders[0]:
                    values[joined] = rewritten.placeholder("input")
                continue
            if node is joined:
                continue
            arguments = fx.node.map_arg(node.args, lambda n: values[n])
            keywords = fx.node.map_arg(node.kwargs, lambda n: values[n])
            if node.op == "placeholder":
                values[node] = rewritten.placeholder(node.name)
            elif node.op == "get_attr":
                values[node] = rewritten.get_attr(str(node.target))
            elif node.op == "output":
                result = arguments[0]
                rewritten.output(result[0] if isinstance(result, tuple | list) and len(result) == 1 else result)
            elif node.op == "call_module":
                values[node] = self._module_call(rewritten, node, holder, path, tuple(arguments), dict(keywords))
            elif node.op == "call_function" and _name(node.target) in ("contiguous", "clone", "alias", "detach"):
                values[node] = arguments[0]  # the same values
            else:
                call = _torch_call(node.target, tuple(arguments), dict(keywords)) if node.op == "call_function" \
                    else None
                op, target, args, kwargs = call or (node.op, node.target, tuple(arguments), dict(keywords))
                values[node] = rewritten.create_node(op, target, args, kwargs, name=node.name)
        if joined is not None:
            parts: Any = joined.args[0]
            self.joined[path] = [placeholders.index(p) for p in parts]
        chain = [n for n in rewritten.nodes if n.op not in ("placeholder", "output")]
        start = next(iter(rewritten.nodes))
        last = list(rewritten.nodes)[-1]
        if chain and [str(n.target) for n in chain] == list(children) and last.args[0] is chain[-1] and \
                not holder._parameters and \
                not holder._buffers and all(n.op == "call_module" and n.args == ((chain[i - 1] if i else start),)
                                            and not n.kwargs for i, n in enumerate(chain)):
            # its children applied in order: an nn.Sequential (torchvision's MLPBlock is one), as it was
            sequential = nn.Sequential if kind == "Sequential" else type(kind, (nn.Sequential,), {})
            return sequential(OrderedDict(children))
        return fx.GraphModule(holder, rewritten, class_name=kind)

    @staticmethod
    def _joined_input(graph: fx.Graph, placeholders: list[fx.Node]) -> fx.Node | None:
        """``torch.cat`` of all of a module's inputs along the channels, done first (DenseNet's
        layers, which the program calls with the list of earlier outputs spread out)."""
        if not placeholders or any(len(p.users) != 1 for p in placeholders):
            return None
        user = next(iter(placeholders[0].users))
        if _name(user.target) != "cat":
            return None
        given = _arguments(user.target, tuple(user.args), dict(user.kwargs))
        parts = list(given["tensors"])
        if sorted(parts, key=placeholders.index) != placeholders or given["dim"] != 1:
            return None
        return user

    def _module_call(self, graph: fx.Graph, node: fx.Node, holder: nn.Module, path: str, args: tuple,
                     kwargs: dict) -> Any:
        target = str(node.target)
        child = holder.get_submodule(target)
        child_path = f"{path}.{target}" if path else target
        if isinstance(child, nn.MultiheadAttention) and len(args) == 1 and not kwargs:
            # self-attention, as its caller wrote it: (x, x, x), the output without the weights
            call = graph.call_module(target, (args[0], args[0], args[0]), {"need_weights": False})
            return graph.call_function(operator.getitem, (call, 0))
        order = self.joined.get(child_path)
        if order is not None and len(args) == len(order) > 1:
            joined = graph.call_function(torch.cat, ([args[i] for i in order], 1))
            return graph.call_module(target, (joined,), kwargs)
        return graph.create_node("call_module", target, args, kwargs, name=node.name)

    def _attention(self, module: nn.Module, graph: fx.Graph, where: str) -> nn.Module:
        """nn.MultiheadAttention (self-attention, without masks) from its tensors and the heads
        its scaled_dot_product_attention splits the features into."""
        tensors = dict(module.named_parameters())
        placeholders = [n for n in graph.nodes if n.op == "placeholder"]
        attention = [n for n in graph.nodes if n.op == "call_function" and
                     _name(n.target) == "scaled_dot_product_attention"]
        if set(tensors) - {"in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"} or \
                "in_proj_weight" not in tensors or len(placeholders) != 1 or len(attention) != 1:
            raise ModelImportError.single(f"{where}: a MultiheadAttention other than self-attention with one "
                                          "projection of q, k and v cannot be read back from the program",
                                          hint="import the Python callable that builds the model")
        query = attention[0].args[0]
        shape: tuple[int, ...] = tuple(getattr(query.meta.get("val") if isinstance(query, fx.Node) else None,
                                               "shape", ()))
        first = next(iter(placeholders[0].users))
        batch_first = _name(first.target) == "transpose" and sorted(first.args[1:3]) == [0, 1]
        embed = tensors["in_proj_weight"].shape[1]
        if len(shape) != 4:
            raise ModelImportError.single(f"{where}: its attention's heads are not in the program")
        attention_module = nn.MultiheadAttention(embed, int(shape[1]), bias="in_proj_bias" in tensors,
                                                 batch_first=batch_first)
        self.lost.setdefault("an attention's dropout, written as 0", []).append(where)
        return _with(attention_module, **tensors)

    def _window_attention(self, module: nn.Module, graph: fx.Graph, where: str) -> nn.Module:
        """torchvision's ShiftedWindowAttention (Swin) from its tensors: the heads and the window
        from its bias table, the shift from the roll its graph starts with (none where the window
        covers the image, which torchvision then does not shift)."""
        from torchvision.models.swin_transformer import ShiftedWindowAttention

        tensors = dict(module.named_parameters())
        expected = {"qkv.weight", "proj.weight", "relative_position_bias_table"}
        if not expected <= set(tensors) or set(tensors) - expected - {"qkv.bias", "proj.bias"}:
            raise ModelImportError.single(f"{where}: its ShiftedWindowAttention holds other tensors than "
                                          "torchvision's; it cannot be read back from the program")
        table = tensors["relative_position_bias_table"]
        window = _window_size(table, where)
        rolls = [n for n in graph.nodes if n.op == "call_function" and _name(n.target) == "roll"]
        shift = [-int(s) for s in rolls[0].args[1]] if rolls else [0, 0]
        attention = ShiftedWindowAttention(tensors["qkv.weight"].shape[1], [window, window], shift, table.shape[1],
                                           qkv_bias="qkv.bias" in tensors, proj_bias="proj.bias" in tensors)
        self.lost.setdefault("an attention's dropout, written as 0", []).append(where)
        return _with(attention, **tensors)


def _window_size(table: torch.Tensor, where: str) -> int:
    """The window's side from its relative position bias table, (2w - 1)² rows."""
    side = round(table.shape[0] ** 0.5)
    if side * side != table.shape[0] or side % 2 == 0:
        raise ModelImportError.single(f"{where}: a window attention over a window that is not square cannot be read "
                                      "back from a program", hint="import the Python callable that builds the model")
    return (side + 1) // 2


def _own_tensors(module: nn.Module) -> list[tuple[str, torch.Tensor]]:
    return [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]


def _holder(module: nn.Module, children: dict[str, nn.Module]) -> nn.Module:
    """A plain module with the rebuilt children and the module's own tensors."""
    holder = nn.Module()
    for name, child in children.items():
        holder.add_module(name, child)
    for name, tensor in _own_tensors(module):
        if isinstance(tensor, nn.Parameter):
            holder.register_parameter(name, tensor)
        else:
            holder.register_buffer(name, tensor)
    return holder


def rebuild(program: Any) -> tuple[nn.Module, dict[str, list[str]]]:
    """The program's modules as nn.Modules, and what the program does not record (and where)."""
    rebuilding = Rebuild(program)
    return rebuilding.model(), rebuilding.lost
