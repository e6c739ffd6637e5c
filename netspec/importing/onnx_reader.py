"""`netspec import` for ONNX files: the graph read node by node, and put back into its modules.

ONNX keeps operators, not modules: an exporter may fold a batch norm into the convolution before
it, and the module tree is at best a note on each node. PyTorch's exporter notes each node's
module path and classes (``pkg.torch.onnx.name_scopes``, ``class_hierarchy``), from which
netspec.importing.scoped puts the tree back, so that repeated blocks are written once; a file
without the notes, or whose notes do not make a tree, is written as a flat list whose header says
why. Each node becomes the catalogue layer it is, its initializers the layer's weights (PyTorch's
layout, which ONNX shares); a node without a layer is refused with its name. The round trip runs
the file with ONNX's own reference evaluator and the spec's PyTorch model on the same inputs.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from netspec.errors import ModelImportError, counted
from netspec.importing.scoped import NotATree, ScopedNode, ScopedTree
from netspec.importing.structure import one_or_list, without_defaults
from netspec.importing.verify import compare_outputs, probe_inputs
from netspec.layers.base import name_problem

# operators that are one catalogue layer without settings
SIMPLE = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "HardSwish": "hardswish", "Add": "add",
          "Mul": "multiply"}
PASSED_ON = {"Identity", "Dropout"}  # nothing in inference


def load_onnx_file(path: Path) -> Any:
    try:
        import onnx
    except ImportError:
        raise ModelImportError.single(f"reading {path} needs the onnx package", hint="pip install onnx") from None
    if not path.is_file():
        raise ModelImportError.single(f"no such file: {path}")
    try:
        model = onnx.load(str(path))
        if not model.graph.node:  # an empty file parses as an empty model
            raise ModelImportError.single(f"{path} holds no ONNX graph (an empty or foreign file)")
        return onnx.shape_inference.infer_shapes(model)
    except ModelImportError:
        raise
    except Exception as error:  # protobuf's DecodeError, a graph shape inference rejects
        raise ModelImportError.single(f"cannot read {path} as an ONNX model: {type(error).__name__}: "
                                      f"{str(error).strip()[:300]}") from None


def _attributes(node: Any) -> dict[str, Any]:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _modules(node: Any) -> list[tuple[str, str]]:
    """The (path, class) of each module the node ran in, from the model down, as PyTorch's
    exporter notes them (its last entries name the operation itself); [] where it does not."""
    notes = {p.key: p.value for p in node.metadata_props}
    scopes = re.findall(r"'([^']*)'", notes.get("pkg.torch.onnx.name_scopes", ""))
    classes = re.findall(r"'([^']*)'", notes.get("pkg.torch.onnx.class_hierarchy", ""))
    if len(scopes) < 2 or len(scopes) != len(classes):
        return []
    return list(zip(scopes[:-1], classes[:-1], strict=True))


def _shape(value: Any) -> tuple[int | str, ...]:
    return tuple(d.dim_value or d.dim_param for d in value.type.tensor_type.shape.dim)


class OnnxModelReader:
    """netspec import's reader of ONNX graphs (netspec.importing.ModelReader)."""

    def __init__(self) -> None:
        self.shape: tuple[int, ...] = ()
        self.batch: int | None = None  # a batch size the file fixes
        self.state: dict[str, np.ndarray] = {}  # the spec's PyTorch state dict, from the initializers

    def read(self, model: Any, input_shape: tuple[int, ...] | None) -> tuple[dict[str, Any], list[str]]:
        from onnx import numpy_helper

        graph = model.graph
        self.constants = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
        for node in graph.node:  # Constant nodes hold values as initializers do
            if node.op_type == "Constant":
                self.constants[node.output[0]] = numpy_helper.to_array(_attributes(node)["value"])
        inputs = [i for i in graph.input if i.name not in self.constants]
        if len(inputs) != 1 or len(graph.output) != 1:
            raise ModelImportError.single(f"the graph has {counted(len(inputs), 'input')} and "
                                          f"{counted(len(graph.output), 'output')}; a "
                                          "spec has one of each")
        shape = _shape(inputs[0])
        if len(shape) < 2 or not all(isinstance(d, int) and d > 0 for d in shape[1:]):
            raise ModelImportError.single(f"the graph's input {inputs[0].name} has the shape {shape}; netspec "
                                          "import reads a graph with a fixed input (batch apart)")
        self.batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
        self.shape = tuple(int(d) for d in shape[1:])
        if input_shape is not None and tuple(input_shape) != self.shape:
            raise ModelImportError.single(f"the graph takes inputs of {'x'.join(map(str, self.shape))}, not "
                                          f"{'x'.join(map(str, input_shape))}", hint="leave --input out")
        self.shapes = {v.name: _shape(v) for v in [*graph.value_info, *graph.input, *graph.output]}
        self.input_name = inputs[0].name
        read = self._read_nodes(graph)
        try:
            body, how = self._tree(read)
        except NotATree as why:
            self.state = {}
            body = {"layers": self._flat(read)}
            how = ["each ONNX node a layer, named by the module that made it where the file says;",
                   f"a flat list: the module tree could not be recovered ({why})."]
        class_name = body.pop("class_name", None)
        return {**({"class_name": class_name} if class_name else {}), "input": list(self.shape), **body}, how

    # --- nodes to layers ------------------------------------------------------------------------

    def _read_nodes(self, graph: Any) -> list[tuple[Any, ScopedNode]]:
        """Each node that computes something, as its catalogue layer, with the modules it notes."""
        alias: dict[str, str] = {}  # a value a passed-on node (Identity, Dropout) gives -> the value it takes
        read = []
        for node in graph.node:
            if node.op_type == "Constant":
                continue
            values = [alias.get(v, v) for v in node.input if v and v not in self.constants]
            if node.op_type in PASSED_ON:
                if values:
                    alias[node.output[0]] = values[0]
                elif node.input and node.input[0] in self.constants:  # an initializer under a second name
                    self.constants[node.output[0]] = self.constants[node.input[0]]
                continue
            layer, weights = self._layer(node, values)
            weight = node.input[1] if len(node.input) > 1 and node.input[1] in self.constants else ""
            read.append((node, ScopedNode(_modules(node), layer, weights, values, node.output[0],
                                          weight.removesuffix(".weight") if weight.endswith(".weight") else None)))
        self.output_name = alias.get(graph.output[0].name, graph.output[0].name)
        return read

    def _tree(self, read: list[tuple[Any, ScopedNode]]) -> tuple[dict[str, Any], list[str]]:
        """The spec's modules and layers from the module paths the nodes note (ScopedTree); raises
        NotATree where they do not make one."""
        from netspec.importing.structure import SpecBuilder

        tree, state = ScopedTree([n for _, n in read], self.input_name, self.output_name).build()
        try:
            modules, layers = SpecBuilder(tree).build()
        except ModelImportError as error:
            raise NotATree(str(error).splitlines()[0].removeprefix("error: ")) from None
        self.state = state
        return {"class_name": tree.kind, **({"modules": modules} if modules else {}), "layers": layers}, [
            "each module class a module definition, from the module paths the exporter noted on the nodes;",
            "layers named as the original's state dict (a batch norm the exporter folded into a convolution",
            "is that convolution's bias)."]

    def _flat(self, read: list[tuple[Any, ScopedNode]]) -> list[dict[str, Any]]:
        """Every node a layer of one list, named by its weights' module or the module it notes."""
        names: dict[str, str] = {self.input_name: "input"}  # ONNX value -> the spec layer that makes it
        taken: set[str] = set()
        items: list[dict[str, Any]] = []
        previous = "input"
        for node, scoped in read:
            name = self._name(node, taken)
            sources = [self._source(node, v, names) for v in scoped.inputs]
            layer = scoped.layer
            item = {"name": name, "type": layer["type"], **without_defaults(layer["type"], layer)}
            if sources != [previous]:
                item["inputs"] = sources[0] if len(sources) == 1 else sources
            items.append(item)
            for key, value in scoped.weights.items():
                self.state[f"{name}.{key}"] = value
            names[scoped.output] = previous = name
        if names.get(self.output_name) != previous:
            raise ModelImportError.single("the graph's output is not its last node; netspec import reads a graph "
                                          "whose nodes end at its output")
        return items

    @staticmethod
    def _source(node: Any, value: str, names: dict[str, str]) -> str:
        if value not in names:
            raise ModelImportError.single(f"{node.name}: its input {value} is not made by a node netspec import read")
        return names[value]

    def _name(self, node: Any, taken: set[str]) -> str:
        """The module its weights came from (``layer1.0.conv1.weight``: ``layer1_0_conv1``), else the
        module path the exporter noted, else the node's own name; made unique."""
        scopes = next((p.value for p in node.metadata_props if p.key == "pkg.torch.onnx.name_scopes"), None)
        paths = re.findall(r"'([^']*)'", scopes) if scopes else []
        weight = node.input[1] if len(node.input) > 1 and node.input[1] in self.constants else ""
        stem = weight.removesuffix(".weight") if weight.endswith(".weight") else \
            paths[-2] if len(paths) > 2 else paths[-1] if paths and paths[-1] else node.name or node.op_type
        stem = re.sub(r"\W", "_", stem).strip("_") or node.op_type.lower()
        if not stem[0].isalpha():
            stem = f"{node.op_type.lower()}_{stem}"
        name, number = stem, 1
        while name in taken or name_problem(name) or name == "input":
            name, number = f"{stem}_{number}", number + 1
        taken.add(name)
        return name

    def _constant(self, node: Any, index: int) -> np.ndarray | None:
        return self.constants.get(node.input[index]) if len(node.input) > index and node.input[index] else None

    def _layer(self, node: Any, values: list[str]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        kind, attributes = node.op_type, _attributes(node)
        where = node.name or kind
        if kind in SIMPLE and (len(values) == 2) == (kind in ("Add", "Mul")) and \
                len(values) == len([v for v in node.input if v]):
            return {"type": SIMPLE[kind]}, {}
        if kind == "Conv":
            weight = self._constant(node, 1)
            pads = attributes.get("pads", [0] * 4)
            half = len(pads) // 2
            if weight is None or weight.ndim != 4 or pads[:half] != pads[half:] or \
                    attributes.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
                raise ModelImportError.single(f"{where}: a Conv other than 2-D with its weights in the file and the "
                                              "same padding on both sides has no netspec layer")
            bias = self._constant(node, 2)
            weights = {"weight": weight, **({"bias": bias} if bias is not None else {})}
            return {"type": "conv2d", "out_channels": int(weight.shape[0]),
                    "kernel_size": one_or_list(weight.shape[2:]),
                    "stride": one_or_list(attributes.get("strides", [1, 1])), "padding": one_or_list(pads[:half]),
                    "dilation": one_or_list(attributes.get("dilations", [1, 1])), "groups": attributes.get("group", 1),
                    "bias": bias is not None}, weights
        if kind == "BatchNormalization":
            scale, shift, mean, var = (self._constant(node, i) for i in range(1, 5))
            if scale is None or shift is None or mean is None or var is None:
                raise ModelImportError.single(f"{where}: a batch norm whose statistics are not in the file has no "
                                              "netspec layer")
            # the shortest decimal that is the same float32 (ONNX keeps 1e-5 as 9.999999747378752e-06)
            return {"type": "batchnorm2d", "eps": float(str(np.float32(attributes.get("epsilon", 1e-5)))),
                    "momentum": round(1 - float(attributes.get("momentum", 0.9)), 7)}, {
                "weight": scale, "bias": shift, "running_mean": mean, "running_var": var,
                "num_batches_tracked": np.zeros((), dtype=np.int64)}
        if kind == "Clip":
            low, high = self._constant(node, 1), self._constant(node, 2)
            if low is not None and high is not None and float(low) == 0 and float(high) == 6:
                return {"type": "relu6"}, {}
        if kind == "HardSigmoid" and abs(attributes.get("alpha", 0.2) - 1 / 6) < 1e-6 and \
                attributes.get("beta", 0.5) == 0.5:
            return {"type": "hardsigmoid"}, {}
        if kind in ("MaxPool", "AveragePool"):
            pads = attributes.get("pads", [0] * 4)
            half = len(pads) // 2
            if len(attributes["kernel_shape"]) == 2 and pads[:half] == pads[half:] and \
                    set(attributes.get("dilations", [1])) == {1}:
                layer = {"type": "maxpool2d" if kind == "MaxPool" else "avgpool2d",
                         "kernel_size": one_or_list(attributes["kernel_shape"]),
                         "stride": one_or_list(attributes.get("strides", [1, 1])), "padding": one_or_list(pads[:half]),
                         "ceil_mode": bool(attributes.get("ceil_mode", 0))}
                if kind == "AveragePool":
                    layer["count_include_pad"] = bool(attributes.get("count_include_pad", 0))
                return layer, {}
        if kind == "GlobalAveragePool":
            return {"type": "global_avgpool2d", "keepdims": True}, {}
        if kind == "ReduceMean":
            axes = self._constant(node, 1)
            axes = axes if axes is not None else attributes.get("axes")
            if axes is not None and sorted(int(a) % 4 for a in np.ravel(axes)) == [2, 3]:
                return {"type": "global_avgpool2d", "keepdims": bool(attributes.get("keepdims", 1))}, {}
        if kind in ("Flatten", "Reshape"):
            before, after = self.shapes.get(values[0], ()), self.shapes.get(node.output[0], ())
            if len(after) == 2 and len(before) > 2 and (kind == "Reshape" or attributes.get("axis", 1) == 1):
                return {"type": "flatten"}, {}
        if kind == "Concat" and attributes.get("axis") == 1:
            return {"type": "concat"}, {}
        if kind == "Gemm":
            weight, bias = self._constant(node, 1), self._constant(node, 2)
            if weight is not None and attributes.get("transB") == 1 and not attributes.get("transA") and \
                    attributes.get("alpha", 1.0) == 1.0 and attributes.get("beta", 1.0) == 1.0:
                weights = {"weight": weight, **({"bias": bias} if bias is not None else {})}
                return {"type": "linear", "out_features": int(weight.shape[0]), "bias": bias is not None}, weights
        if kind == "Softmax" and attributes.get("axis", -1) in (-1, 1):
            return {"type": "softmax"}, {}
        raise ModelImportError.single(f"{where}: the ONNX operator {kind} (as used here) has no netspec layer",
                                      hint="the catalogue's layers are listed in the README (netspec schema "
                                           "prints them)")

    # --- the round trip -------------------------------------------------------------------------

    def round_trip(self, model: Any, net: Any) -> dict[str, Any]:
        """The file run by ONNX's reference evaluator against the spec's PyTorch model with the
        file's weights, loaded strictly."""
        from onnx.reference import ReferenceEvaluator

        from netspec.codegen.backend import get_backend, require_modules

        try:
            require_modules("torch", "torch")
        except ImportError as error:
            raise ModelImportError.single(f"verifying an ONNX import builds the spec in PyTorch: {error}",
                                          hint="pip install torch, or --no-verify") from None
        import torch

        from netspec_torch.weights import apply_state_dict

        built = get_backend("torch").load(net).eval()
        apply_state_dict(built, {k: torch.from_numpy(np.array(v)) for k, v in self.state.items()},
                         "the file's initializers")
        x = probe_inputs(self.shape)
        evaluator = ReferenceEvaluator(model)
        # a batch the file fixes (an export of one example) is run an example at a time
        parts = [x[i:i + 1] for i in range(2)] if self.batch == 1 else [x]
        runs: list[Any] = [evaluator.run(None, {self.input_name: part}) for part in parts]
        expected = np.concatenate([np.asarray(run[0]) for run in runs])
        with torch.no_grad():
            got = built(torch.from_numpy(x)).numpy()
        return {**compare_outputs(expected, got, "the spec's model", "the file"), "tensors": len(self.state)}

    def save_weights(self, model: Any, net: Any, path: str) -> None:
        from safetensors.numpy import save_file

        save_file({k: np.ascontiguousarray(v) for k, v in self.state.items()}, path,
                  metadata={"spec": net.spec.name, "layout": "torch"})
