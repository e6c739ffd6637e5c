"""`netspec import` for PyTorch: a live ``nn.Module`` read back as the tree netspec.importing
writes as a spec.

Each module's own ``forward`` is traced with torch.fx, its children left as calls (so the tree is
the model's, named as its state dict), and run once on the input the module really receives in
a forward pass of the whole model, which tells tensors from the bookkeeping around them (shapes,
asserts). A child that is a catalogue layer (``nn.Conv2d``) becomes that layer with its settings;
any other child is traced in turn; the operations ``forward`` applies itself (``x + y``,
``torch.cat``, ``torch.flatten``) become the catalogue's merges and layout layers. Whatever has
no layer is refused with where it is: a spec that loads but computes something else is never written.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any, TypeGuard

import numpy as np
import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from netspec.errors import ModelImportError
from netspec.importing.structure import one_or_list
from netspec.importing.tree import INPUT, Instance, Step
from netspec.layers.activations import SHORTHAND_ACTIVATIONS
from netspec.layers.base import LAYER_REGISTRY, REPETITION_NAME
from netspec_torch.exported import program_input


def library_functions() -> tuple[Callable, ...]:
    """Functions of model libraries that are one catalogue layer, kept as calls when traced."""
    found = []
    try:
        from torchvision.models.shufflenetv2 import channel_shuffle
        from torchvision.models.swin_transformer import _patch_merging_pad

        found += [channel_shuffle, _patch_merging_pad]
    except ImportError:
        pass
    return tuple(found)


class _Shallow(fx.Tracer):
    """Traces one module's forward, its submodules as calls."""

    def __init__(self) -> None:
        super().__init__(autowrap_functions=library_functions())

    def is_leaf_module(self, module: nn.Module, qualname: str) -> bool:
        return True


def _refuse(where: str, message: str, hint: str | None = None) -> ModelImportError:
    return ModelImportError.single(f"{where or 'the model'}: {message}", hint=hint)


# --- catalogue layers from modules ---------------------------------------------------------------

def _conv(module: Any, where: str) -> dict[str, Any]:
    rank = len(module.kernel_size)
    if module.padding_mode != "zeros":
        raise _refuse(where, f"padding_mode={module.padding_mode!r} has no netspec layer (only zero padding)")
    padding = module.padding
    if isinstance(padding, str):  # 'valid', or PyTorch's 'same' (stride 1): symmetric for an odd extent
        extents = [(k - 1) * d for k, d in zip(module.kernel_size, module.dilation, strict=True)]
        if padding == "same" and any(e % 2 for e in extents):
            raise _refuse(where, "padding='same' with an even kernel pads one side more in PyTorch than netspec's "
                                 "'same' does")
        padding = tuple(0 if padding == "valid" else e // 2 for e in extents)
    return {"type": f"conv{rank}d", "out_channels": module.out_channels,
            "kernel_size": one_or_list(module.kernel_size), "stride": one_or_list(module.stride),
            "padding": one_or_list(padding), "dilation": one_or_list(module.dilation), "groups": module.groups,
            "bias": module.bias is not None}


def _conv_transpose(module: Any, where: str) -> dict[str, Any]:
    if len(module.kernel_size) != 2 or module.groups != 1 or set(module.dilation) != {1}:
        raise _refuse(where, "only a 2-D transposed convolution without groups or dilation has a netspec layer")
    return {"type": "conv_transpose2d", "out_channels": module.out_channels,
            "kernel_size": one_or_list(module.kernel_size), "stride": one_or_list(module.stride),
            "padding": one_or_list(module.padding), "output_padding": one_or_list(module.output_padding),
            "bias": module.bias is not None}


def _pool(kind: str) -> Callable[[nn.Module, str], dict[str, Any]]:
    def convert(module: Any, where: str) -> dict[str, Any]:
        rank = int(type(module).__name__[-2])
        layer = {"type": f"{kind}{rank}d", "kernel_size": one_or_list(module.kernel_size),
                 "stride": one_or_list(module.stride), "padding": one_or_list(module.padding),
                 "ceil_mode": module.ceil_mode}
        if kind == "maxpool":
            if one_or_list(module.dilation) != 1 or module.return_indices:
                raise _refuse(where, "max pooling with dilation or return_indices has no netspec layer")
        else:
            if module.divisor_override is not None:
                raise _refuse(where, "average pooling with divisor_override has no netspec layer")
            layer["count_include_pad"] = module.count_include_pad
        return layer
    return convert


def _adaptive_avgpool(module: Any, where: str) -> dict[str, Any]:
    size = module.output_size
    sizes = (size, size) if isinstance(size, int) else tuple(size)
    if sizes == (1, 1):
        return {"type": "global_avgpool2d", "keepdims": True}
    if None in sizes:
        raise _refuse(where, "an adaptive pooling size of None has no netspec layer")
    return {"type": "adaptive_avgpool2d", "output_size": one_or_list(sizes)}


def _batchnorm(module: Any, where: str) -> dict[str, Any]:
    if module.momentum is None or not module.track_running_stats:
        raise _refuse(where, "batch norm without running statistics (or with a cumulative average) has no "
                             "netspec layer")
    rank = next(r for r, cls in ((1, nn.BatchNorm1d), (2, nn.BatchNorm2d), (3, nn.BatchNorm3d))
                if isinstance(module, cls))
    return {"type": f"batchnorm{rank}d", "eps": module.eps, "momentum": module.momentum, "affine": module.affine}


def _with_activation(norm: Callable[[nn.Module, str], dict[str, Any]]) -> Callable[[nn.Module, str], dict[str, Any]]:
    """timm's norm-and-activation modules (BatchNormAct2d: the norm's weights on the module itself,
    then ``drop`` and ``act``): the norm with its ``activation:``, where the catalogue's has one."""
    def convert(module: Any, where: str) -> dict[str, Any]:
        layer = norm(module, where)
        if not isinstance(module.drop, nn.Identity):
            raise _refuse(where, f"{type(module).__name__} with a {type(module.drop).__name__} after the norm has no "
                                 "netspec layer")
        if isinstance(module.act, nn.Identity):
            return layer
        convert_act = MODULE_LAYERS.get(type(module.act).__name__)
        act = convert_act(module.act, f"{where}.act") if convert_act is not None else {}
        if set(act) != {"type"} or act["type"] not in SHORTHAND_ACTIVATIONS or \
                "activation" not in LAYER_REGISTRY[layer["type"]].model_fields:
            raise _refuse(where, f"{type(module).__name__} with {type(module.act).__name__} after the norm has no "
                                 "netspec layer", hint="batch norm takes an activation: relu, silu, gelu, ...")
        return {**layer, "activation": act["type"]}
    return convert


def _drop_path(module: Any, where: str) -> dict[str, Any]:
    if not getattr(module, "scale_by_keep", True):
        raise _refuse(where, "DropPath(scale_by_keep=False) has no netspec layer (stochastic_depth rescales)")
    return {"type": "stochastic_depth", "p": module.drop_prob}


def _layernorm(module: Any, where: str) -> dict[str, Any]:
    if len(module.normalized_shape) != 1:
        raise _refuse(where, f"a LayerNorm over {len(module.normalized_shape)} axes has no netspec layer (it "
                             "normalizes the last axis)")
    if module.elementwise_affine and getattr(module, "bias", True) is None:
        raise _refuse(where, "a LayerNorm with a weight and no bias has no netspec layer")
    return {"type": "layernorm", "eps": module.eps, "elementwise_affine": module.elementwise_affine}


def _attention(module: Any, where: str) -> dict[str, Any]:
    if not module.batch_first or not module._qkv_same_embed_dim or module.bias_k is not None or \
            module.add_zero_attn:
        raise _refuse(where, "only nn.MultiheadAttention(batch_first=True) without kdim/vdim, add_bias_kv or "
                             "add_zero_attn has a netspec layer")
    return {"type": "multihead_attention", "num_heads": module.num_heads, "dropout": module.dropout,
            "bias": module.in_proj_bias is not None}


def _window_attention(module: Any, where: str) -> dict[str, Any]:
    """torchvision's ShiftedWindowAttention (Swin; its V2, with a continuous bias, is another class)."""
    if (module.qkv.bias is None) != (module.proj.bias is None):
        raise _refuse(where, "window attention with a bias on only one of qkv and proj has no netspec layer")
    return {"type": "window_attention", "num_heads": module.num_heads, "window_size": one_or_list(module.window_size),
            "shift": one_or_list(module.shift_size), "attention_dropout": module.attention_dropout,
            "dropout": module.dropout, "bias": module.qkv.bias is not None}


def _linear(module: Any, where: str) -> dict[str, Any]:
    return {"type": "linear", "out_features": module.out_features, "bias": module.bias is not None}


def _gelu(module: Any, where: str) -> dict[str, Any]:
    if getattr(module, "approximate", "none") != "none":  # timm's GELU has no tanh form
        raise _refuse(where, "GELU's tanh approximation has no netspec layer")
    return {"type": "gelu"}


def _flatten(module: Any, where: str) -> dict[str, Any]:
    if (module.start_dim, module.end_dim) != (1, -1):
        raise _refuse(where, f"Flatten({module.start_dim}, {module.end_dim}) has no netspec layer "
                             "(flatten keeps the batch and joins every other axis)")
    return {"type": "flatten"}


def _stochastic_depth(module: Any, where: str) -> dict[str, Any]:
    if module.mode != "row":
        raise _refuse(where, f"StochasticDepth(mode={module.mode!r}) has no netspec layer (only 'row')")
    return {"type": "stochastic_depth", "p": module.p}


def _simple(kind: str, **fields: str) -> Callable[[nn.Module, str], dict[str, Any]]:
    """A layer whose fields are the module's attributes of the same (or the given) names."""
    def convert(module: nn.Module, where: str) -> dict[str, Any]:
        return {"type": kind, **{field: getattr(module, attribute) for field, attribute in fields.items()}}
    return convert


# the catalogue layer each module class is, by class name (torchvision's own modules included)
MODULE_LAYERS: dict[str, Callable[[nn.Module, str], dict[str, Any]]] = {
    "Conv1d": _conv, "Conv2d": _conv, "Conv3d": _conv, "ConvTranspose2d": _conv_transpose,
    "MaxPool1d": _pool("maxpool"), "MaxPool2d": _pool("maxpool"), "MaxPool3d": _pool("maxpool"),
    "AvgPool1d": _pool("avgpool"), "AvgPool2d": _pool("avgpool"), "AvgPool3d": _pool("avgpool"),
    "AdaptiveAvgPool2d": _adaptive_avgpool,
    "BatchNorm1d": _batchnorm, "BatchNorm2d": _batchnorm, "BatchNorm3d": _batchnorm,
    "LayerNorm": _layernorm, "GroupNorm": _simple("groupnorm", num_groups="num_groups", eps="eps", affine="affine"),
    "LocalResponseNorm": _simple("lrn", size="size", alpha="alpha", beta="beta", k="k"),
    "Linear": _linear, "Dropout": _simple("dropout", p="p"), "Identity": _simple("identity"), "Flatten": _flatten,
    "ReLU": _simple("relu"), "ReLU6": _simple("relu6"), "GELU": _gelu, "SiLU": _simple("silu"),
    "Hardswish": _simple("hardswish"), "Hardsigmoid": _simple("hardsigmoid"), "Sigmoid": _simple("sigmoid"),
    "Tanh": _simple("tanh"), "LeakyReLU": _simple("leaky_relu", negative_slope="negative_slope"),
    "ELU": _simple("elu", alpha="alpha"), "ChannelShuffle": _simple("channel_shuffle", groups="groups"),
    "StochasticDepth": _stochastic_depth, "LayerNorm2d": _layernorm,
    "Permute": _simple("permute", dims="dims"), "MultiheadAttention": _attention,
    "ShiftedWindowAttention": _window_attention,
    # timm's own (timm.layers): norms computed by the functional form, with the same weights
    "GroupNorm1": _simple("groupnorm", num_groups="num_groups", eps="eps", affine="affine"),
    "BatchNormAct2d": _with_activation(_batchnorm), "DropPath": _drop_path,
}
# the packages whose classes MODULE_LAYERS names (a class of the same name elsewhere is traced)
LAYER_PACKAGES = ("torch.nn", "torchvision", "timm.layers")


def module_layer(module: nn.Module, where: str) -> dict[str, Any] | None:
    """The catalogue layer ``module`` is, or None for a module to trace into. An nn class the
    catalogue lacks (one without children of its own) is refused."""
    convert = MODULE_LAYERS.get(type(module).__name__)
    if convert is not None and type(module).__module__.startswith(LAYER_PACKAGES):
        return convert(module, where)
    if not list(module.children()) and type(module).__module__.startswith("torch.nn"):
        raise _refuse(where, f"{type(module).__name__} has no netspec layer")
    return None


# --- the operations a forward applies itself -----------------------------------------------------

def _tensor(value: Any) -> TypeGuard[torch.Tensor]:
    return isinstance(value, torch.Tensor)


ACTIVATION_FUNCTIONS: dict[Any, str] = {
    F.relu: "relu", torch.relu: "relu", F.relu6: "relu6", F.gelu: "gelu", F.silu: "silu", torch.sigmoid: "sigmoid",
    F.sigmoid: "sigmoid", torch.tanh: "tanh", F.tanh: "tanh", F.hardswish: "hardswish", F.hardsigmoid: "hardsigmoid",
}
ACTIVATION_METHODS = {"relu": "relu", "sigmoid": "sigmoid", "tanh": "tanh"}


class _NotTraced(Exception):
    """torch.fx could not trace a module's forward (``error`` says why, for the user)."""

    def __init__(self, error: ModelImportError) -> None:
        super().__init__(str(error))
        self.error = error


class _Reader:
    """Reads one module instance's traced forward into steps."""

    def __init__(self, module: nn.Module, path: str, example: tuple, importer: TorchImporter) -> None:
        self.module, self.path, self.importer = module, path, importer
        try:
            self.graph = _Shallow().trace(module)
        except Exception as error:  # fx: control flow on a traced value, an unsupported call
            raise _NotTraced(_refuse(path, f"its forward cannot be traced ({type(error).__name__}: {error})",
                                     hint="netspec import reads forward() as a graph: control flow that depends "
                                          "on the data has no spec")) from None
        try:
            self.values = self._run(example)
        except Exception as error:  # the graph traced with an optional argument left out (mask=None)
            first = str(error).strip().splitlines()[0] if str(error).strip() else ""
            raise _NotTraced(_refuse(path, f"its forward, as traced, does not run on its input "
                                           f"({type(error).__name__}: {first})",
                                     hint="netspec import reads forward() as a graph: what it does with optional "
                                          "arguments or Python values has no spec")) from None
        self.names: dict[fx.Node, str] = {}
        self.held: dict[fx.Node, str] = {}  # tensors the module holds itself (ConvNeXt's layer_scale)
        self.step_names: dict[fx.Node, str] = {}
        self.steps: list[Step] = []
        self.called: set[str] = set()
        self.lists: dict[str, Instance] = {}  # a ModuleList the forward runs through, as a chain
        self.chunks: dict[fx.Node, tuple[fx.Node, int, int]] = {}  # x.chunk(n, dim): (x, n, dim)
        # an image's positions joined (x.flatten(2), x.reshape(n, c, h * w)): tokens once transposed
        self.joined: dict[fx.Node, fx.Node] = {}
        self.expanded: dict[fx.Node, fx.Node] = {}  # a held tensor expanded over the batch (ViT's class token)
        self.pairs: set[fx.Node] = set()  # nn.MultiheadAttention's (output, weights): [0] is the layer

    def _run(self, example: tuple) -> dict[fx.Node, Any]:
        """Each node's value on the module's real input (tensors apart from shapes and asserts)."""
        values: dict[fx.Node, Any] = {}
        graph_module = fx.GraphModule(self.module, self.graph)
        interpreter = fx.Interpreter(graph_module)
        original = interpreter.run_node

        def record(node: fx.Node) -> Any:
            values[node] = result = original(node)
            return result

        interpreter.run_node = record  # type: ignore[method-assign,assignment]
        with torch.no_grad():
            interpreter.run(*example)
        return values

    def where(self, node: fx.Node) -> str:
        target = node.target if node.op in ("call_module", "get_attr") else node.name
        return f"{self.path}.{target}" if self.path else str(target)

    def read(self, kind: str, sequential: bool) -> Instance:
        placeholders = [n for n in self.graph.nodes if n.op == "placeholder"]
        tensors_in = [n for n in placeholders if _tensor(self.values.get(n))]
        joined = self._joined_input(placeholders)
        if joined is not None:  # called on a list it concatenates first: its caller writes the concat
            tensors_in = [joined]
        if len(tensors_in) != 1:
            raise _refuse(self.path, f"its forward takes {len(tensors_in)} tensors; netspec import reads modules "
                                     "that take one")
        self.names[tensors_in[0]] = INPUT
        output = next(n for n in self.graph.nodes if n.op == "output")
        for node in self.graph.nodes:
            if node.op in ("placeholder", "output") or node in self.names or not self._feeds(node, output):
                continue  # (a joined input is named already)
            self._step(node)
        result = output.args[0]
        if not isinstance(result, fx.Node) or result not in self.names:
            raise _refuse(self.path, "its forward returns something other than one tensor")
        last = self.names[result]
        if last == INPUT:
            raise _refuse(self.path, "its forward returns its input unchanged")
        # steps after the result (a second output nothing reads) would be dead
        self.steps = self.steps[:next(i for i, s in enumerate(self.steps) if s.name == last) + 1]
        return Instance(self.path, kind, self.steps, sequential)

    def _joined_input(self, placeholders: list[fx.Node]) -> fx.Node | None:
        """``torch.cat(inputs, 1)`` where a forward takes a list of tensors and first joins them
        along the channels (DenseNet's layers take every earlier output): that concat's node, which
        the module reads as its input; else None."""
        lists = [n for n in placeholders if isinstance(self.values.get(n), list | tuple) and self.values[n]
                 and all(_tensor(v) for v in self.values[n])]
        if len(lists) != 1 or len(lists[0].users) != 1:
            return None
        user = next(iter(lists[0].users))
        dim = user.kwargs.get("dim", user.args[1] if len(user.args) > 1 else 0)
        if user.target in (torch.cat, torch.concat) and user.args[0] is lists[0] and \
                self._channel_axis(user, dim if isinstance(dim, int) else -1):
            return user
        return None

    def _feeds(self, node: fx.Node, output: fx.Node) -> bool:
        """Whether the node's value is a tensor the output depends on (shapes and asserts are not)."""
        value = self.values.get(node)
        if isinstance(value, torch.Size) or not _tensor(value) and not isinstance(value, tuple | list):
            return False  # a shape, an assert: bookkeeping
        seen, stack = set(), [node]
        while stack:
            current = stack.pop()
            if current is output:
                return True
            for user in current.users:
                if user not in seen:
                    seen.add(user)
                    stack.append(user)
        return False

    def _inputs(self, node: fx.Node, args: tuple) -> list[str]:
        names = []
        for arg in args:
            if not isinstance(arg, fx.Node):
                continue
            if arg not in self.names:
                raise _refuse(self.where(node), f"{self._describe(node)} takes {arg.name}, which netspec import "
                                                "could not read as a tensor of the network")
            names.append(self.names[arg])
        return names

    def _add(self, node: fx.Node, name: str, inputs: list[str], layer: dict | None = None,
             child: Instance | None = None) -> None:
        self.steps.append(Step(name, inputs, layer, child))
        self.names[node] = name

    def _fresh(self, stem: str) -> str:
        """A name for an operation's step (``add``, ``add_1``): its layer's type, unless a child
        module or an earlier step has it."""
        taken = {name for name, _ in self.module.named_children()} | {s.name for s in self.steps}
        name, number = stem, 1
        while name in taken:
            name, number = f"{stem}_{number}", number + 1
        return name

    @staticmethod
    def _describe(node: fx.Node) -> str:
        if node.op == "call_method":
            return f"Tensor.{node.target}"
        if node.op == "call_function" and isinstance(node.target, torch._ops.OpOverload):
            return str(node.target)  # an operation of a saved program: aten.roll.default
        if node.op == "call_function":
            module = getattr(node.target, "__module__", None) or ""
            name = getattr(node.target, "__name__", str(node.target))
            prefix = {"_operator": "operator", "torch._C._nn": "F", "torch.nn.functional": "F",
                      "torch._C._VariableFunctions": "torch"}.get(module, module)
            return f"{prefix}.{name}" if prefix else name
        return str(node.target)

    def _step(self, node: fx.Node) -> None:
        if node.op == "call_module":
            self._module_call(node)
        elif node.op in ("call_function", "call_method"):
            self._operation(node)
        elif node.op == "get_attr":
            self.held[node] = str(node.target)  # a learned tensor: the operation that applies it says what it is

    def _module_call(self, node: fx.Node) -> None:
        target = str(node.target)
        where = self.where(node)
        child = self.module.get_submodule(target)
        if isinstance(child, nn.MultiheadAttention):
            self._attention_call(node, child)
            return
        kwargs = self._given_keywords(node, child)
        if not kwargs and len(node.args) == 1 and isinstance(node.args[0], list | tuple) and \
                all(isinstance(a, fx.Node) for a in node.args[0]):
            self._list_argument(node, child)
            return
        if kwargs or any(not isinstance(a, fx.Node) for a in node.args) or len(node.args) != 1:
            given = "a list" if node.args and isinstance(node.args[0], list | tuple) else \
                f"{len(node.args)} arguments" + (f" and {', '.join(kwargs)}" if kwargs else "")
            raise _refuse(where, f"{type(child).__name__} is called with {given}; netspec import reads modules "
                                 "called on one tensor")
        inputs = self._inputs(node, node.args)
        if "." in target:
            self._list_call(node, target, child, inputs)
            return
        layer = module_layer(child, where)
        name = target
        if target in self.called:  # a module applied twice: a layer each, if it holds no weights
            if any(True for _ in child.parameters()) or any(True for _ in child.buffers()):
                raise _refuse(where, "the same module with weights is applied twice; a spec's layers each "
                                     "have their own")
            name = node.name
        self.called.add(target)
        if layer is not None:
            self.importer.layers.add(id(child))
            self._add(node, name, inputs, layer=layer)
        else:
            instance = self.importer.instance(child, f"{self.path}.{target}" if self.path else target)
            self._add(node, name, inputs, child=instance)

    def _given_keywords(self, node: fx.Node, child: nn.Module) -> list[str]:
        """The keywords a call gives other than their defaults (timm's blocks get attn_mask=None,
        which is what they do without it)."""
        import inspect

        try:
            parameters = inspect.signature(child.forward).parameters
        except (TypeError, ValueError):
            return list(node.kwargs)
        given = {k: self.values.get(v) if isinstance(v, fx.Node) else v for k, v in node.kwargs.items()}
        return [k for k, v in given.items() if k not in parameters or parameters[k].default is inspect.Parameter.empty
                or _tensor(v) or v != parameters[k].default]

    def _list_argument(self, node: fx.Node, child: nn.Module) -> None:
        """``layer([x, a, b])`` for a module that concatenates its list first (DenseNet): the
        concat written here, the module applied to it."""
        target, where = str(node.target), self.where(node)
        path = f"{self.path}.{target}" if self.path else target
        if module_layer(child, where) is not None or target in self.called or "." in target:
            raise _refuse(where, f"{type(child).__name__} is called with a list; netspec import reads modules "
                                 "called on one tensor")
        self.called.add(target)
        instance = self.importer.instance(child, path)  # refuses a module that does not concatenate it first
        listed: Any = node.args[0]
        parts = self._inputs(node, tuple(listed))
        if len(parts) == 1:  # the concat of one tensor is the tensor
            self._add(node, target, parts, child=instance)
            return
        joined = self._fresh("concat")
        self.steps.append(Step(joined, parts, {"type": "concat"}))
        self._add(node, target, [joined], child=instance)

    def _attention_call(self, node: fx.Node, child: nn.MultiheadAttention) -> None:
        """``attention(x, x, x, need_weights=False)``: self-attention, the catalogue's layer."""
        where = self.where(node)
        given = dict(zip(("query", "key", "value", "key_padding_mask", "need_weights", "attn_mask",
                          "average_attn_weights", "is_causal"), node.args, strict=False)) | dict(node.kwargs)
        sources = {given.get("query"), given.get("key"), given.get("value")}
        if len(sources) != 1 or not isinstance(given.get("query"), fx.Node):
            raise _refuse(where, "nn.MultiheadAttention is called with different query, key and value; netspec's "
                                 "multihead_attention is self-attention (x, x, x)")
        masks = [k for k in ("key_padding_mask", "attn_mask") if given.get(k) is not None]
        if masks or given.get("is_causal"):
            raise _refuse(where, f"nn.MultiheadAttention is called with {', '.join(masks) or 'is_causal'}; "
                                 "netspec's multihead_attention takes no mask")
        if str(node.target) in self.called:
            raise _refuse(where, "the same module with weights is applied twice; a spec's layers each have their own")
        self.called.add(str(node.target))
        self.importer.layers.add(id(child))
        self._add(node, str(node.target), self._inputs(node, (given["query"],)), layer=_attention(child, where))
        self.pairs.add(node)

    def _list_call(self, node: fx.Node, target: str, child: nn.Module, inputs: list[str]) -> None:
        """``for layer in self.layers: x = layer(x)``: the ModuleList's modules called one after the
        other, in order, read as a chain (an nn.Sequential, as its state dict names it)."""
        holder, _, index = target.rpartition(".")
        where = self.where(node)
        if "." in holder or not isinstance(self.module.get_submodule(holder), nn.ModuleList):
            raise _refuse(where, "forward() calls a module inside a child module; netspec import reads modules "
                                 "that call their own children (or run through a ModuleList in order)")
        chain = self.lists.get(holder)
        position = len(chain.steps) if chain is not None else 0
        if index != str(position) or (chain is not None and inputs != [holder]) or \
                (chain is None and holder in self.names.values()):
            raise _refuse(where, f"forward() runs through {holder} out of order or not as a chain; netspec import "
                                 "reads a ModuleList applied in order, each module on the last one's output")
        path = f"{self.path}.{holder}" if self.path else holder
        layer = module_layer(child, where)
        step = Step(index, [INPUT] if position == 0 else [str(position - 1)], layer,
                    None if layer is not None else self.importer.instance(child, f"{path}.{index}"))
        if chain is None:
            chain = self.lists[holder] = Instance(path, "Sequential", [], sequential=True)
            self._add(node, holder, inputs, child=chain)
        chain.steps.append(step)
        self.names[node] = holder

    def _pending(self, node: fx.Node) -> bool:
        """An operation read with the one that uses its result (x.flatten(2) with the transpose
        that makes tokens, a held tensor's expand with the cat that puts it first); True when it is."""
        args: Any = node.args
        source = args[0] if args and isinstance(args[0], fx.Node) else None
        if source is None:
            return False
        before, value = self.values.get(source), self.values[node]
        method = node.target if node.op == "call_method" else None
        reshapes = method in ("flatten", "reshape", "view") or node.target in (torch.flatten, torch.reshape)
        if reshapes and _tensor(before) and _tensor(value) and before.dim() == 4 and \
                tuple(value.shape) == (*before.shape[:2], before.shape[2] * before.shape[3]):
            self.joined[node] = source
            return True
        if method == "expand" and source in self.held:
            self.expanded[node] = source
            return True
        if node.target is operator.getitem and source in self.pairs:
            if args[1] != 0:
                raise _refuse(self.where(node), "the attention weights nn.MultiheadAttention returns have no "
                                                "netspec layer (its output, [0], has)")
            self.names[node] = self.names[source]
            return True
        return False

    def _operation(self, node: fx.Node) -> None:
        if self._pending(node):
            return
        if (node.target == "chunk" and node.op == "call_method") or node.target is torch.chunk:
            args: Any = node.args
            chunks = node.kwargs.get("chunks", args[1] if len(args) > 1 else None)
            dim = node.kwargs.get("dim", args[2] if len(args) > 2 else 0)
            if isinstance(chunks, int) and isinstance(dim, int) and isinstance(args[0], fx.Node):
                self.chunks[node] = (args[0], chunks, dim)  # each part is read where it is taken
                return
        layer, tensor_args = self._operation_layer(node)
        if layer is None:
            raise _refuse(self.where(node), f"{self._describe(node)} has no netspec layer",
                          hint="the catalogue's layers are listed in the README (netspec schema prints them)")
        inputs = self._inputs(node, tensor_args)
        name = self._fresh(layer["type"])
        if LAYER_REGISTRY[layer["type"]].learned_tensor:  # keyed by its own name in the state dict
            held = [self.expanded.get(a, a) for a in node.all_input_nodes]
            name = next(self.step_names[a] for a in held if a in self.step_names)
        if layer["type"] in ("add", "multiply"):
            # the same sum either way round; the module's input last, so that where some uses of a
            # module leave the merge out (when: false passes its first input on), the branch goes on
            inputs.sort(key=lambda step: step == INPUT)
        self._add(node, name, inputs, layer=layer)

    def _operation_layer(self, node: fx.Node) -> tuple[dict[str, Any] | None, tuple]:
        """The layer an operation of forward() is, and its tensor arguments; (None, ()) when none."""
        target: Any = node.target
        args: Any = node.args
        kwargs: Any = node.kwargs
        value = self.values[node]
        tensor_nodes = tuple(a for a in args if isinstance(a, fx.Node) and _tensor(self.values.get(a)))
        method = target if node.op == "call_method" else None
        if (target in (operator.add, operator.iadd, torch.add) or method in ("add", "add_")) and \
                len(tensor_nodes) == 2 and not kwargs:
            held = [a for a in tensor_nodes if a in self.held]
            if len(held) == 1:
                added = next(a for a in tensor_nodes if a is not held[0])
                return self._position_embedding(held[0], added), (added,)
            return {"type": "add"}, tensor_nodes
        if target in (operator.mul, operator.imul, torch.mul) or method in ("mul", "mul_"):
            held = [a for a in tensor_nodes if a in self.held]
            if len(tensor_nodes) == 2 and len(held) == 1 and not kwargs:
                scale = self._layer_scale(held[0], next(a for a in tensor_nodes if a is not held[0]))
                if scale is not None:
                    return scale, tuple(a for a in tensor_nodes if a is not held[0])
            elif len(tensor_nodes) == 2 and not kwargs:
                return {"type": "multiply"}, tensor_nodes
        if target in (torch.cat, torch.concat):
            parts = args[0]
            dim = kwargs.get("dim", args[1] if len(args) > 1 else 0)
            if isinstance(parts, list | tuple) and len(parts) == 2 and parts[0] in self.expanded and dim == 1 and \
                    isinstance(parts[1], fx.Node):
                return self._class_token(self.expanded[parts[0]], parts[1]), (parts[1],)
            if isinstance(parts, list | tuple) and all(isinstance(p, fx.Node) for p in parts) and \
                    self._channel_axis(parts[0], dim):
                return {"type": "concat"}, tuple(parts)
        if target is torch.flatten or method == "flatten":
            start = kwargs.get("start_dim", args[1] if len(args) > 1 else 0)
            end = kwargs.get("end_dim", args[2] if len(args) > 2 else -1)
            if (start, end) == (1, -1):
                return {"type": "flatten"}, tensor_nodes[:1]
        if method in ("view", "reshape") and _tensor(value) and value.dim() == 2 and \
                self.values[args[0]].dim() > 2 and value.shape[0] == self.values[args[0]].shape[0]:
            return {"type": "flatten"}, tensor_nodes[:1]  # x.view(x.size(0), -1)
        kind = ACTIVATION_FUNCTIONS.get(target) if node.op == "call_function" else ACTIVATION_METHODS.get(str(method))
        if kind is not None and len(tensor_nodes) == 1 and not (kind == "gelu" and kwargs.get("approximate",
                                                                                                "none") != "none"):
            return {"type": kind}, tensor_nodes
        if target is F.adaptive_avg_pool2d and _tensor(value) and tuple(value.shape[2:]) == (1, 1):
            return {"type": "global_avgpool2d", "keepdims": True}, tensor_nodes[:1]
        if method == "mean" or target is torch.mean:
            dims = kwargs.get("dim", args[1] if len(args) > 1 else None)
            source = self.values[args[0]]
            if _tensor(source) and source.dim() == 4 and dims is not None and \
                    sorted(d % 4 for d in (dims if isinstance(dims, list | tuple) else [dims])) == [2, 3]:
                return {"type": "global_avgpool2d", "keepdims": bool(kwargs.get("keepdim", False))}, tensor_nodes[:1]
        joined = tensor_nodes[0] if tensor_nodes and tensor_nodes[0] in self.joined else None
        if joined is not None:  # the positions of an image joined, then put before its channels
            dims = [d % 3 for d in (args[1:] if method == "transpose" or target is torch.transpose else
                                    args[1] if len(args) == 2 and isinstance(args[1], list | tuple) else args[1:])
                    if isinstance(d, int)]
            swaps = dims in ([1, 2], [2, 1]) if method == "transpose" or target is torch.transpose else \
                dims == [0, 2, 1] and method == "permute" or target is torch.permute and dims == [0, 2, 1]
            if swaps:
                return {"type": "to_tokens"}, (self.joined[joined],)
        if target is operator.getitem and len(tensor_nodes) == 1 and isinstance(args[1], tuple) and \
                self._selects_token(args[1]) and _tensor(self.values[args[0]]) and self.values[args[0]].dim() == 3:
            return {"type": "select", "index": args[1][1]}, tensor_nodes
        if method == "permute" or target is torch.permute:
            dims = args[1] if len(args) == 2 and isinstance(args[1], list | tuple) else args[1:]
            if all(isinstance(d, int) for d in dims):
                return {"type": "permute", "dims": list(dims)}, tensor_nodes[:1]
        pooling = getattr(target, "__name__", "") if node.op == "call_function" and \
            getattr(target, "__module__", "") in ("torch.nn.functional", "torch._C._nn") else ""
        if pooling in ("avg_pool2d", "max_pool2d"):  # F.max_pool2d is a dispatcher of its own
            names = ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad")
            given = {**dict(zip(names, args[1:], strict=False)), **kwargs}
            if given.get("dilation", 1) in (1, (1, 1)) and not given.get("return_indices", False):
                given.pop("dilation", None)
                given.pop("return_indices", None)
            if given.get("divisor_override") is None:
                given.pop("divisor_override", None)
            if pooling == "max_pool2d":
                given.pop("count_include_pad", None)
                if given.keys() - {"kernel_size", "stride", "padding", "ceil_mode"}:
                    return None, ()
            elif given.keys() - set(names):
                return None, ()
            layer = {"type": "avgpool2d" if pooling == "avg_pool2d" else "maxpool2d",
                     **{k: one_or_list(v) for k, v in given.items() if v is not None}}
            return layer, tensor_nodes[:1]
        if getattr(target, "__name__", "") == "channel_shuffle" and target in library_functions():
            groups = kwargs.get("groups", args[1] if len(args) > 1 else None)
            if isinstance(groups, int):
                return {"type": "channel_shuffle", "groups": groups}, tensor_nodes[:1]
        if target is operator.getitem and isinstance(args[0], fx.Node) and args[0] in self.chunks:
            source, chunks, dim = self.chunks[args[0]]
            if isinstance(args[1], int) and self._channel_axis(source, dim):
                return {"type": "chunk", "chunks": chunks, "index": args[1] % chunks}, (source,)
        if getattr(target, "__name__", "") == "_patch_merging_pad" and \
                getattr(target, "__module__", "") == "torchvision.models.swin_transformer":
            return {"type": "patch_merge"}, tensor_nodes[:1]  # Swin's 2×2 pixels side by side
        if target is F.dropout:
            return {"type": "dropout", "p": kwargs.get("p", args[1] if len(args) > 1 else 0.5)}, tensor_nodes[:1]
        return None, ()

    def _layer_scale(self, held: fx.Node, scaled: fx.Node) -> dict[str, Any] | None:
        """A learned scale per channel (ConvNeXt's layer_scale: C×1×1 on channels first, or C on
        features last) multiplied in: the catalogue's layer_scale, named as the tensor."""
        tensor, value = self.values[held], self.values.get(scaled)
        if not isinstance(tensor, nn.Parameter) or not isinstance(value, torch.Tensor) or "." in self.held[held]:
            return None
        channels = tensor.shape[0]
        if tuple(tensor.shape) not in ((channels,) + (1,) * (value.dim() - 2), (channels,)):
            return None
        self.step_names[held] = self.held[held]
        # the shortest decimal that is the same float32 (1e-06, not 9.999999974752427e-07)
        return {"type": "layer_scale", "init": float(str(tensor.detach().flatten()[0].numpy()))}

    @staticmethod
    def _selects_token(index: tuple) -> bool:
        """x[:, 0] (or x[:, 0, :]): one position of every example of a sequence."""
        whole = slice(None, None, None)
        return len(index) in (2, 3) and index[0] == whole and isinstance(index[1], int) and \
            (len(index) == 2 or index[2] == whole)

    def _position_embedding(self, held: fx.Node, added: fx.Node) -> dict[str, Any] | None:
        """A learned 1×L×D tensor added to an N×L×D sequence: ViT's pos_embedding."""
        tensor, value = self.values[held], self.values.get(added)
        if not isinstance(tensor, nn.Parameter) or not _tensor(value) or "." in self.held[held] or \
                value.dim() != 3 or tuple(tensor.shape) != (1, *value.shape[1:]):
            return None
        self.step_names[held] = self.held[held]
        return {"type": "position_embedding"}

    def _class_token(self, held: fx.Node, tokens: fx.Node) -> dict[str, Any] | None:
        """A learned 1×1×D tensor put before an N×L×D sequence: ViT's class_token."""
        tensor, value = self.values[held], self.values.get(tokens)
        if not isinstance(tensor, nn.Parameter) or not _tensor(value) or "." in self.held[held] or \
                value.dim() != 3 or tuple(tensor.shape) != (1, 1, value.shape[2]):
            return None
        self.step_names[held] = self.held[held]
        return {"type": "class_token"}

    def _channel_axis(self, node: fx.Node, dim: int) -> bool:
        value = self.values.get(node)
        return isinstance(value, torch.Tensor) and dim % value.dim() == 1


class TorchImporter:
    """Reads a model into the neutral tree, one instance per module it applies."""

    def __init__(self, model: nn.Module, example: torch.Tensor, given: bool = True) -> None:
        self.model = model.eval()
        self.inputs: dict[int, tuple] = {}
        self.layers: set[int] = set()  # the modules read as catalogue layers
        self.rebuilt: set[int] = set()  # modules made again from torch.export (_exported_instance)
        self.exported: set[str] = set()  # the paths read that way (their weights, checked by the round trip)
        self.lost: dict[str, list[str]] = {}  # what torch.export did not record -> where
        hooks = [m.register_forward_pre_hook(self._record_input, with_kwargs=True) for m in model.modules()]
        try:
            with torch.no_grad():
                model(example)
        except Exception as error:  # the model's own check of its input, or a shape it cannot take
            shape = "x".join(map(str, example.shape[1:]))
            raise ModelImportError.single(
                f"the model fails on an input of {shape}{'' if given else ' (the default)'}: "
                f"{type(error).__name__}: {error}", hint="give the input it takes: --input CxHxW") from None
        finally:
            for hook in hooks:
                hook.remove()

    def _record_input(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        # a copy of a list argument: its caller may append to it afterwards (DenseNet's features)
        self.inputs.setdefault(id(module), tuple(list(a) if isinstance(a, list) else a for a in args))

    def instance(self, module: nn.Module, path: str) -> Instance:
        if id(module) not in self.inputs:
            raise _refuse(path, "it is never applied to the example input")
        kind = type(module).__name__
        sequential = type(module) is nn.Sequential or (isinstance(module, nn.Sequential)
                                                       and type(module).forward is nn.Sequential.forward)
        names = [name for name, _ in module.named_children()]
        # a chain's children may be named block1-0 (RegNet): the spec's `names:` of a repeat writes them
        allowed = REPETITION_NAME.match if sequential else str.isidentifier
        odd = next((name for name in names if not name.isdigit() and not allowed(name)), None)
        if odd is not None:
            raise _refuse(f"{path}.{odd}" if path else odd, f"the name {odd!r} cannot name a spec's layer "
                          "(letters, digits and underscores)", hint="netspec import keeps the state dict's names, "
                          "so that the original's weights load")
        if sequential and names != [str(i) for i in range(len(names))]:
            # nn.Sequential(OrderedDict(...)): its children keep their names, in a chain
            sequential, kind = False, kind if kind != "Sequential" else "NamedSequential"
        try:
            reader = _Reader(module, path, self.inputs[id(module)], self)
        except _NotTraced as failure:
            if id(module) in self.rebuilt:
                raise failure.error from None
            return self._exported_instance(module, path, failure.error)
        return reader.read(kind, sequential)

    def _exported_instance(self, module: nn.Module, path: str, error: ModelImportError) -> Instance:
        """A module torch.fx cannot trace (its forward branches on a shape: timm's pre-logits pool
        only an image larger than its kernel) read from torch.export instead, which runs the
        branches on the input the module really gets, then rebuilt and read as a saved program is
        (netspec_torch.exported). Refused with fx's reason where torch.export cannot read it either."""
        from netspec_torch.exported import Rebuild

        example = self.inputs[id(module)]
        try:
            program = torch.export.export(module, example, strict=False)
            rebuilding = Rebuild(program)
            rebuilt = rebuilding.model()
        except ModelImportError:
            raise error from None
        except Exception:  # data-dependent control flow, an operation torch.export cannot trace
            raise error from None
        for what, where in rebuilding.lost.items():
            self.lost.setdefault(what, []).extend(f"{path}.{w}" if path else w for w in where)
        self.rebuilt.update(id(m) for m in rebuilt.modules())
        hooks = [m.register_forward_pre_hook(self._record_input, with_kwargs=True) for m in rebuilt.modules()]
        try:
            with torch.no_grad():
                rebuilt(*example)
        finally:
            for hook in hooks:
                hook.remove()
        self.exported.add(path)
        return self.instance(rebuilt, path)

    def tree(self) -> Instance:
        root = self.instance(self.model, "")
        self._refuse_unused_weights()
        return root

    def _refuse_unused_weights(self) -> None:
        """A submodule with weights that the forward pass never runs (GoogLeNet's auxiliary heads,
        which only training uses): its tensors would be in the state dict and not in the spec."""
        unused: list[str] = []
        inside_layers = [name for name, module in self.model.named_modules() if id(module) in self.layers]
        if "" in self.exported:
            return  # the whole model read from torch.export: the round trip's strict load checks its weights
        inside_layers += list(self.exported)
        for name, module in self.model.named_modules():
            if any(name.startswith(f"{u}.") for u in unused + inside_layers):
                continue  # inside one already named, or a layer's own (nn.MultiheadAttention's out_proj)
            if any(id(m) in self.inputs for m in module.modules()):
                continue  # it, or a module inside it (a ModuleList's), runs
            if any(True for _ in module.parameters()) or any(True for _ in module.buffers()):
                unused.append(name)
        if unused:
            raise ModelImportError.single(
                f"{', '.join(unused)} hold{'s' if len(unused) == 1 else ''} weights that the forward pass "
                "(in evaluation) does not use, which a spec's model would not have",
                hint="build the model without them: a training-only head is often an argument "
                     "(torchvision's GoogLeNet: --arg aux_logits=false)")


def example_shape(model: nn.Module) -> tuple[int, ...] | None:
    """The input a model says it takes, where it says so: torchvision's ViT and MaxViT keep their
    image size, timm's models their configuration's; None where it does not say."""
    size = getattr(model, "image_size", None)
    if isinstance(size, int):
        return (3, size, size)
    configured = getattr(model, "pretrained_cfg", None)  # timm's models: the input they were trained at
    shape = configured.get("input_size") if isinstance(configured, dict) else None
    if isinstance(shape, tuple | list) and len(shape) == 3 and all(isinstance(n, int) and n > 0 for n in shape):
        return tuple(shape)
    return None



# --- the target, and the round trip --------------------------------------------------------------

def probe_model(model: nn.Module, shape: tuple[int, ...], batch: int = 4) -> nn.Module:
    """A copy of ``model`` whose weights let every layer show in its output, for the round trip.

    Weights as initialized hide layers: ViT's zero head makes every output zero, ConvNeXt's layer
    scale of 1e-6 leaves each block's branch out, a layer norm's unit scale hides a wrong eps, and
    batch norm's unit running statistics leave a deep network's output nearly independent of its
    input (a ReLU6 for a ReLU went unnoticed). So what starts constant is drawn at random, and batch
    norm gets random scales and the statistics of a random batch, as in a trained network."""
    import copy

    from netspec.importing.verify import varied

    probe = copy.deepcopy(model)
    rng = np.random.default_rng(0)
    generator = torch.Generator().manual_seed(0)
    norms = [m for m in probe.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine
             and m.track_running_stats]
    with torch.no_grad():
        for tensor in probe.parameters():
            drawn = varied(tensor.detach().float().cpu().numpy(), rng)
            if drawn is not None:
                tensor.copy_(torch.from_numpy(drawn))
        momenta = [norm.momentum for norm in norms]
        for norm in norms:
            norm.weight.copy_(0.5 + 3.5 * torch.rand(norm.weight.shape, generator=generator))
            norm.bias.copy_(0.5 * torch.randn(norm.bias.shape, generator=generator))
            norm.reset_running_stats()
            norm.momentum = None  # a cumulative average: after one batch, that batch's statistics
        if norms:
            probe.train()(torch.randn((batch, *shape), generator=generator))
        for norm, momentum in zip(norms, momenta, strict=True):
            norm.momentum = momentum
            mean, var = norm.running_mean, norm.running_var
            assert mean is not None and var is not None  # track_running_stats
            mean.add_(0.1 * var.sqrt() * torch.randn(mean.shape, generator=generator))
            var.mul_(0.8 + 0.45 * torch.rand(var.shape, generator=generator))
    return probe.eval()


def round_trip(model: nn.Module, built: nn.Module, shape: tuple[int, ...]) -> dict[str, Any]:
    """Loads a probe of the original (``probe_model``) into the spec's model ``built`` strictly
    and compares their outputs on random inputs; refuses a spec whose outputs differ, or a
    comparison the input does not decide (it would show nothing)."""
    probe = probe_model(model, shape)
    return _compare(probe, built, probe.state_dict(), shape, None, "the original")


def _compare(reference: nn.Module, built: nn.Module, weights: dict[str, torch.Tensor], shape: tuple[int, ...],
             batch: int | None, original: str) -> dict[str, Any]:
    """``weights`` loaded strictly into the spec's model ``built`` (the reference holds them
    already), both run on the probe's inputs, ``batch`` of them at a time (all at once for None),
    and their outputs compared (netspec.importing.verify.compare_outputs)."""
    from netspec.importing.verify import compare_outputs, probe_inputs
    from netspec_torch.weights import apply_state_dict

    apply_state_dict(built, weights, f"{original}'s state dict")  # every tensor, strictly
    x = torch.from_numpy(probe_inputs(shape))
    size = batch or len(x)
    padded = torch.cat([x, torch.zeros(-len(x) % size, *shape)])  # whole batches of the size the reference takes
    with torch.no_grad():
        parts = [reference(padded[i:i + size]) for i in range(0, len(padded), size)]
        odd = next((p for p in parts if not isinstance(p, torch.Tensor)), None)
        if odd is not None:
            raise ModelImportError.single(f"{original} returns a {type(odd).__name__}; netspec import reads "
                                          "models that return one tensor")
        try:  # on the same batches: a deep network's rounding differs between batch sizes
            got = torch.cat([built.eval()(padded[i:i + size]) for i in range(0, len(padded), size)])[:len(x)]
        except RuntimeError as error:
            raise ModelImportError.single(f"the spec's model fails where {original} runs: {error}",
                                          hint="please report it: netspec import wrote nothing") from None
    return {**compare_outputs(torch.cat(parts)[:len(x)].numpy(), got.numpy(), "the spec's model", original),
            "tensors": len(weights)}


def _lost_lines(lost: dict[str, list[str]]) -> list[str]:
    """The spec header's lines on what a program does not record, and where."""
    return [f"not in the program, which records inference only: {what} ({', '.join(where[:3])}"
            f"{f' and {len(where) - 3} more' if len(where) > 3 else ''})." for what, where in lost.items()]


def round_trip_program(program: Any, rebuilt: nn.Module, built: nn.Module, shape: tuple[int, ...]) -> dict[str, Any]:
    """The round trip of a torch.export program: the probe's weights (``probe_model`` of the
    rebuild) loaded into the program itself and into the spec's model, both strictly, and their
    outputs compared; the program runs its inputs one batch of the size it was exported with at
    a time. The rebuild is not compared with: it is what is being checked."""
    from netspec_torch.weights import apply_state_dict

    batch = program_input(program)[0] or 2  # a batch that may vary: two (torch.export's sizes start at 2)
    try:
        probe = probe_model(rebuilt, shape)
    except RuntimeError:  # a program that reshapes to the batch it was exported with runs that batch only
        probe = probe_model(rebuilt, shape, batch=batch)
    weights = probe.state_dict()
    original = program.module()
    apply_state_dict(original, weights, "the program's state dict")
    return _compare(original, built, weights, shape, batch, "the program")


class TorchModelReader:
    """netspec import's reader of PyTorch models and saved torch.export programs
    (netspec.importing.ModelReader)."""

    def __init__(self) -> None:
        self.shape: tuple[int, ...] = ()
        self.program: Any = None  # the ExportedProgram a .pt2 file holds
        self.rebuilt: nn.Module | None = None  # its modules, rebuilt (netspec_torch.exported)

    def read(self, model: Any, input_shape: tuple[int, ...] | None) -> tuple[dict[str, Any], list[str]]:
        from netspec.importing import DEFAULT_INPUT
        from netspec.importing.structure import SpecBuilder

        how = ["each module class a module definition, the state-dict names the original's."]
        batch = 1
        if not isinstance(model, nn.Module):  # a torch.export program
            from netspec_torch.exported import program_input, rebuild

            self.program = model
            exported_batch, shape = program_input(model)
            batch = exported_batch or 2  # a batch the program lets vary: two, since torch.export specializes 1
            if input_shape is not None and tuple(input_shape) != tuple(shape):
                raise ModelImportError.single(f"the program takes inputs of {'x'.join(map(str, shape))}, not "
                                              f"{'x'.join(map(str, input_shape))}", hint="leave --input out")
            self.rebuilt, lost = rebuild(model)
            model, input_shape = self.rebuilt, tuple(shape)
            how += _lost_lines(lost)
        # an image classifier's usual input where the model does not say (a ViT keeps its image size)
        self.shape = input_shape or example_shape(model) or DEFAULT_INPUT
        importer = TorchImporter(model, torch.randn(batch, *self.shape), given=input_shape is not None)
        tree = importer.tree()
        if importer.exported:
            shown = sorted(p or "the model" for p in importer.exported)
            how += [f"read with torch.export where torch.fx cannot trace: {', '.join(shown[:3])}"
                    f"{f' and {len(shown) - 3} more' if len(shown) > 3 else ''}.", *_lost_lines(importer.lost)]
        modules, layers = SpecBuilder(tree).build()
        body: dict[str, Any] = {"class_name": type(model).__name__, "input": list(self.shape)}
        if modules:
            body["modules"] = modules
        body["layers"] = layers
        return body, how

    def round_trip(self, model: Any, net: Any) -> dict[str, Any]:
        from netspec.codegen.backend import get_backend

        built = get_backend("torch").load(net)
        if self.program is None:
            return round_trip(model, built, self.shape)
        return round_trip_program(self.program, self._rebuilt(), built, self.shape)

    def _rebuilt(self) -> nn.Module:
        assert self.rebuilt is not None, "read() rebuilds the program first"
        return self.rebuilt

    def save_weights(self, model: Any, net: Any, path: str) -> None:
        from safetensors.torch import save_file

        source = self._rebuilt() if self.program is not None else model
        save_file({k: v.contiguous() for k, v in source.state_dict().items()}, path)
