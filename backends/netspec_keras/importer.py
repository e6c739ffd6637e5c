"""`netspec import` for Keras: a functional model (``keras.applications.ResNet50``, a saved
``.keras`` file) read back as a spec, layer by layer, each layer keeping the original's name, so
that its weights load by name.

The model's configuration gives each layer's class, settings and inputs (what
``model.get_config()`` holds); each layer becomes the catalogue layer it is, with the activation
a Conv2D or Dense applies as its ``activation:``. Keras pads with a layer of its own
(``ZeroPadding2D``) where PyTorch pads in the convolution: the padding is folded into the layer
it feeds where that computes the same. Whatever has no layer is refused with its name.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from netspec.errors import ModelImportError
from netspec.importing.structure import one_or_list, without_defaults
from netspec.importing.verify import compare_outputs, probe_inputs, varied
from netspec.layers.activations import SHORTHAND_ACTIVATIONS
from netspec.layers.base import name_problem

# Keras' activation names -> the catalogue's
ACTIVATIONS = {"relu": "relu", "relu6": "relu6", "sigmoid": "sigmoid", "tanh": "tanh", "softmax": "softmax",
               "swish": "silu", "silu": "silu", "gelu": "gelu", "elu": "elu", "hard_sigmoid": "hardsigmoid",
               "hard_swish": "hardswish", "hard_silu": "hardswish", "leaky_relu": "leaky_relu"}
# activations whose outputs are never negative: a max pool after one sees the same maximum whether
# its border is zeros or nothing
NON_NEGATIVE = {"relu", "relu6", "sigmoid", "softmax", "hardsigmoid"}


def _refuse(name: str, message: str, hint: str | None = None) -> ModelImportError:
    return ModelImportError.single(f"{name}: {message}", hint=hint)


def load_keras_file(path: Path) -> Any:
    """A saved .keras model, read in Keras' safe mode (no code from the file is run)."""
    from netspec_keras import import_keras

    if not path.is_file():
        raise ModelImportError.single(f"no such file: {path}")
    keras = import_keras()
    import zipfile

    if not zipfile.is_zipfile(path):  # Keras says "File not found" of a file that is there but no archive
        raise ModelImportError.single(f"{path} is not a .keras archive (not a zip file)",
                                      hint="a .keras file is what keras' model.save() writes")
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as error:  # a damaged archive, a custom layer it cannot rebuild, unsafe code
        raise ModelImportError.single(f"cannot read {path} as a Keras model: {type(error).__name__}: "
                                      f"{str(error).strip()[:300]}",
                                      hint="a .keras file is what model.save() writes; custom layers have no "
                                           "spec") from None


def _activation(name: str, where: str) -> str | None:
    if name in ("linear", None):
        return None
    kind = ACTIVATIONS.get(name)
    if kind is None:
        raise _refuse(where, f"the activation {name!r} has no netspec layer")
    return kind


def _same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TensorFlow's 'same' padding of one axis (before, after)."""
    extent = (kernel - 1) * dilation + 1
    total = max((math.ceil(size / stride) - 1) * stride + extent - size, 0)
    return total // 2, total - total // 2


class _Graph:
    """The functional model's layers in order, each with its inputs' layer names."""

    def __init__(self, model: Any) -> None:
        config = model.get_config()
        if not isinstance(config, dict) or "layers" not in config or "input_layers" not in config:
            raise ModelImportError.single(f"{model.name} is a subclassed Keras model: its call() is Python code, "
                                          "not a graph netspec import can read",
                                          hint="build it with keras.Input and the functional API (or Sequential)")
        self.model = model
        self.layers = [entry for entry in config["layers"]]
        self.inputs = {entry["name"]: self._sources(entry.get("inbound_nodes", [])) for entry in self.layers}
        self.users: dict[str, list[str]] = {}
        for name, sources in self.inputs.items():
            for source in sources:
                self.users.setdefault(source, []).append(name)
        ends = config["input_layers"], config["output_layers"]
        self.input_names = [ends[0][0]] if isinstance(ends[0][0], str) else [e[0] for e in ends[0]]
        self.output_names = [ends[1][0]] if isinstance(ends[1][0], str) else [e[0] for e in ends[1]]

    @staticmethod
    def _sources(nodes: list) -> list[str]:
        if len(nodes) > 1:
            raise ModelImportError.single("a layer applied more than once (shared weights) has no spec")
        found: list[str] = []

        def walk(value: Any) -> None:
            if isinstance(value, dict):
                history = value.get("config", {}).get("keras_history") if value.get("class_name") == \
                    "__keras_tensor__" else None
                if history:
                    found.append(history[0])
                else:
                    for item in value.values():
                        walk(item)
            elif isinstance(value, list | tuple):
                for item in value:
                    walk(item)

        walk(nodes)
        return found

    def shape(self, name: str) -> tuple[int, ...]:
        """A layer's output shape, without the batch (Keras' channels-last)."""
        return tuple(self.model.get_layer(name).output.shape[1:])


def _functional(model: Any) -> Any:
    """A Sequential model with a known input as the functional model of the same layers."""
    from netspec_keras import import_keras

    keras = import_keras()
    if isinstance(model, keras.Sequential):
        try:
            return keras.Model(model.inputs, model.outputs, name=model.name)
        except (AttributeError, ValueError):  # never built: no input, so no graph
            raise ModelImportError.single(f"{model.name} is a Sequential model without an input, so it has no "
                                          "graph to read", hint="start it with keras.Input(shape)") from None
    return model


class KerasModelReader:
    """netspec import's reader of Keras functional models (netspec.importing.ModelReader)."""

    def __init__(self) -> None:
        self.shape: tuple[int, ...] = ()
        self.reordered: dict[str, tuple[int, ...]] = {}

    def weights(self, model: Any) -> dict[str, list[np.ndarray]]:
        """Each layer's weights as the spec's Keras model takes them, by layer name: the original's,
        a Dense kernel after a Flatten with its rows in the channels-first order."""
        weights = {layer.name: layer.get_weights() for layer in model.layers if layer.get_weights()}
        for name, (height, width, channels) in self.reordered.items():
            kernel, *rest = weights[name]
            rows = kernel.reshape(height, width, channels, -1).transpose(2, 0, 1, 3).reshape(kernel.shape)
            weights[name] = [rows, *rest]
        return weights

    def read(self, model: Any, input_shape: tuple[int, ...] | None) -> tuple[dict[str, Any], list[str]]:
        graph = _Graph(_functional(model))
        if len(graph.input_names) != 1 or len(graph.output_names) != 1:
            raise ModelImportError.single(f"{model.name} has {len(graph.input_names)} inputs and "
                                          f"{len(graph.output_names)} outputs; a spec has one of each")
        own = graph.shape(graph.input_names[0])
        if None in own:
            raise ModelImportError.single(f"{model.name} takes inputs of any size {own}; netspec import reads a "
                                          "model built for one", hint="build it with input_shape=(224, 224, 3)")
        channels_first = (own[-1], *own[:-1])
        if input_shape is not None and tuple(input_shape) != channels_first:
            raise ModelImportError.single(f"{model.name} is built for inputs of {'x'.join(map(str, channels_first))} "
                                          f"(channels first), not {'x'.join(map(str, input_shape))}",
                                          hint="build the model for the input you want, or leave --input out")
        self.shape = channels_first
        reader = _Layers(graph)
        layers = reader.read()
        self.reordered = reader.reordered
        return {"input": list(channels_first), "layers": layers}, ["each Keras layer a layer of the spec, named as "
                                                                    "in the original."]

    def round_trip(self, model: Any, net: Any) -> dict[str, Any]:
        """The spec's Keras model, given the weights of a probe of the original by layer name
        (strictly), against the probe; then the spec's PyTorch model with the same weights
        converted, where PyTorch is installed."""
        from netspec.codegen.backend import get_backend
        from netspec_keras import set_from_keras_weights

        model = _functional(model)
        probe = _probe(model, self.shape)
        built = get_backend("keras").load(net)
        weights = self.weights(probe)
        set_from_keras_weights(built, net, weights, "the original's weights")
        x = np.moveaxis(probe_inputs(self.shape), 1, -1).copy()  # Keras' channels last
        expected = np.asarray(probe(x, training=False))
        got = np.asarray(built(x, training=False))
        result = compare_outputs(expected, got, "the spec's Keras model")
        result["tensors"] = sum(len(w) for w in weights.values())
        torch_result = _torch_agrees(built, net, x, got)
        if torch_result is not None:
            result["torch_difference"] = torch_result
        return result

    def save_weights(self, model: Any, net: Any, path: str) -> None:
        """The original's weights as the spec's PyTorch state dict (written by the torch backend,
        which adds the buffers Keras does not keep, as `netspec convert` does)."""
        from netspec.codegen.backend import get_backend
        from netspec_keras import set_from_keras_weights, torch_layout_state

        built = get_backend("keras").load(net)
        set_from_keras_weights(built, net, self.weights(model), "the original's weights")
        get_backend("torch").write_weights(net, torch_layout_state(built, net), path, "the original's weights")


def _probe(model: Any, shape: tuple[int, ...]) -> Any:
    """A copy of the model whose weights let every layer show (see netspec_torch.importer.probe_model):
    what starts constant is drawn at random, and batch norm's statistics are a random batch's."""
    from netspec_keras import import_keras

    keras = import_keras()
    probe = keras.Model.from_config(model.get_config())  # the same graph and layer names, new weights
    generator = np.random.default_rng(0)
    for layer in probe.layers:
        arrays = []
        for array in model.get_layer(layer.name).get_weights():  # the original's, varied
            drawn = varied(array, generator)
            arrays.append(array if drawn is None else drawn)
        if arrays:
            layer.set_weights(arrays)
    norms = [layer for layer in probe.layers if isinstance(layer, keras.layers.BatchNormalization)]
    if norms:
        momenta = [layer.momentum for layer in norms]
        for layer in norms:
            layer.momentum = 0.0  # the moving statistics become the batch's
        batch = generator.standard_normal((4, *shape[1:], shape[0])).astype("float32")
        probe(batch, training=True)
        for layer, momentum in zip(norms, momenta, strict=True):
            layer.momentum = momentum
    return probe


def _torch_agrees(built: Any, net: Any, x: np.ndarray, keras_output: np.ndarray) -> float | None:
    """The spec's PyTorch model, with the Keras model's weights converted, on the same input (channels
    first); None where PyTorch is not installed."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return None
    import torch

    from netspec.codegen.backend import get_backend
    from netspec_keras import torch_layout_state

    model = get_backend("torch").load(net).eval()
    state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in torch_layout_state(built, net).items()}
    model.load_state_dict(state, strict=False)  # Keras has no batch norm step counter; all else is there
    with torch.no_grad():
        got = model(torch.from_numpy(np.moveaxis(x, -1, 1).copy())).numpy()
    if got.ndim == 4:
        got = np.moveaxis(got, 1, -1)
    # two frameworks' kernels round differently, and deep networks carry it on: a mistake is of the
    # outputs' own size
    return compare_outputs(keras_output, got, "the spec's PyTorch model", "its Keras model",
                           relative=1e-3)["max_difference"]


class _Layers:
    """The graph's layers as the spec's, in order."""

    def __init__(self, graph: _Graph) -> None:
        self.graph = graph
        self.activation: dict[str, str | None] = {}  # what each written layer's output went through last
        self.padding: dict[str, tuple[tuple[int, int], tuple[int, int]]] = {}  # ZeroPadding2D, by name
        self.renamed: dict[str, str] = {}  # a padding layer stands for its input
        # a Dense after a Flatten of an image: the spec's model flattens channels first, as PyTorch
        # does, so its kernel's rows are the original's (height, width, channels) order permuted
        self.reordered: dict[str, tuple[int, ...]] = {}

    def read(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        previous = None
        for entry in self.graph.layers:
            name, kind, config = entry["name"], entry["class_name"], entry["config"]
            if name in self.graph.input_names:
                previous = name
                continue
            sources = [self.renamed.get(s, s) for s in self.graph.inputs[name]]
            if kind == "ZeroPadding2D":
                self._padding(name, config, sources)
                continue
            problem = name_problem(name)
            if problem or not name.isidentifier():
                raise _refuse(name, problem or f"the name {name!r} cannot name a spec's layer (letters, digits and "
                                               "underscores)", hint="rename the layer in the Keras model")
            padded = [s for s in self.graph.inputs[name] if s in self.padding]
            layer = self._layer(name, kind, config, padded[0] if padded else None)
            item = {"name": name, "type": layer["type"], **without_defaults(layer["type"], layer)}
            input_names = ["input" if s in self.graph.input_names else s for s in sources]
            if input_names != ["input" if previous in self.graph.input_names else previous]:
                item["inputs"] = input_names[0] if len(input_names) == 1 else input_names
            items.append(item)
            previous = name
        output = self.renamed.get(self.graph.output_names[0], self.graph.output_names[0])
        if previous != output:
            raise _refuse(output, "the model's output is not its last layer; netspec import reads a model whose "
                                  "layers end at its output")
        return items

    def _padding(self, name: str, config: dict[str, Any], sources: list[str]) -> None:
        pad = config["padding"]
        if isinstance(pad, int):
            pad = ((pad, pad), (pad, pad))
        elif isinstance(pad[0], int):
            pad = ((pad[0], pad[0]), (pad[1], pad[1]))
        users = self.graph.users.get(name, [])
        if len(users) != 1 or config.get("data_format", "channels_last") != "channels_last":
            raise _refuse(name, "ZeroPadding2D has no netspec layer of its own; netspec import folds it into the "
                                "one layer it feeds, and this one feeds "
                                f"{len(users)}")
        self.padding[name] = (tuple(pad[0]), tuple(pad[1]))
        self.renamed[name] = sources[0]

    def _folded_padding(self, name: str, padded: str, kernel: Any, stride: Any, dilation: Any,
                        pools_max: bool) -> Any:
        """The padding of a layer fed by ZeroPadding2D: symmetric as ints, else TensorFlow's
        'same' where it is that; a max pool only after what is never negative."""
        (top, bottom), (left, right) = self.padding[padded]
        source = self.graph.inputs[padded][0]
        if pools_max and self.activation.get(self.renamed.get(source, source)) not in NON_NEGATIVE:
            raise _refuse(name, "a max pool after zero padding of values that may be negative has no netspec layer "
                                "(netspec's max pool pads with nothing, not zeros)")
        if top == bottom and left == right:
            return one_or_list((top, left))
        size = self.graph.shape(source)[:2]
        kernels, strides, dilations = (tuple(v) if isinstance(v, list | tuple) else (v, v)
                                       for v in (kernel, stride, dilation))
        same = tuple(_same_padding(n, k, s, d) for n, k, s, d in zip(size, kernels, strides, dilations, strict=True))
        if same == ((top, bottom), (left, right)):
            return "same"
        raise _refuse(name, f"the zero padding before it ({top}, {bottom}) x ({left}, {right}) is neither the same "
                            "on both sides nor TensorFlow's 'same'; netspec has no layer for it")

    def _layer(self, name: str, kind: str, config: dict[str, Any], padded: str | None) -> dict[str, Any]:
        if config.get("data_format", "channels_last") != "channels_last":
            raise _refuse(name, f"{kind} with data_format={config['data_format']!r}: netspec import reads "
                                "channels-last Keras models")
        activation: str | None = None
        if kind in ("Conv2D", "DepthwiseConv2D"):
            if padded is not None and config["padding"] != "valid":
                raise _refuse(name, f"{kind} with padding='{config['padding']}' after zero padding has no netspec "
                                    "layer")
            padding = self._folded_padding(name, padded, config["kernel_size"], config["strides"],
                                           config["dilation_rate"], False) if padded else \
                ("same" if config["padding"] == "same" else 0)
            channels = self.graph.shape(self.graph.inputs[name][0])[-1]
            out, groups = (config["filters"], config.get("groups", 1)) if kind == "Conv2D" else \
                (channels * config["depth_multiplier"], channels)
            activation = _activation(config["activation"], name)
            layer = {"type": "conv2d", "out_channels": out, "kernel_size": one_or_list(config["kernel_size"]),
                     "stride": one_or_list(config["strides"]), "padding": padding,
                     "dilation": one_or_list(config["dilation_rate"]), "groups": groups, "bias": config["use_bias"]}
            if activation:
                layer["activation"] = activation
        elif kind == "Dense":
            activation = _activation(config["activation"], name)
            source = self.graph.inputs[name][0]
            flattened = self.graph.inputs.get(source, [None])[0] if self._kind(source) == "Flatten" else None
            if flattened is not None and len(self.graph.shape(flattened)) > 1:
                self.reordered[name] = self.graph.shape(flattened)
            layer = {"type": "linear", "out_features": config["units"], "bias": config["use_bias"]}
            if activation:
                layer["activation"] = activation
        elif kind == "BatchNormalization":
            rank = len(self.graph.shape(name))
            if config["axis"] not in (-1, rank, [rank], [-1]) or config["center"] != config["scale"]:
                raise _refuse(name, "batch normalization over another axis than the channels, or with only one of "
                                    "center and scale, has no netspec layer")
            layer = {"type": "batchnorm2d" if rank == 3 else "batchnorm1d", "eps": config["epsilon"],
                     "momentum": round(1 - config["momentum"], 10), "affine": config["center"]}
        elif kind in ("Activation", "ReLU", "Softmax"):
            layer = self._activation_layer(name, kind, config)
            activation = layer["type"]
        elif kind in ("MaxPooling2D", "AveragePooling2D"):
            pools_max = kind == "MaxPooling2D"
            if padded is not None and config["padding"] != "valid":
                raise _refuse(name, f"{kind} with padding='same' after zero padding has no netspec layer")
            padding = self._folded_padding(name, padded, config["pool_size"], config["strides"], 1, pools_max) \
                if padded else ("same" if config["padding"] == "same" else 0)
            layer = {"type": "maxpool2d" if pools_max else "avgpool2d", "kernel_size": one_or_list(config["pool_size"]),
                     "stride": one_or_list(config["strides"] or config["pool_size"]), "padding": padding}
            if not pools_max and padding == "same":
                layer["count_include_pad"] = False  # TensorFlow averages over the pixels inside
            activation = self.activation.get(self.graph.inputs[name][0]) if pools_max else None
        elif kind in ("GlobalAveragePooling2D",):
            layer = {"type": "global_avgpool2d", "keepdims": bool(config.get("keepdims", False))}
        elif kind == "Flatten":
            layer = {"type": "flatten"}
        elif kind == "Dropout":
            layer = {"type": "dropout", "p": config["rate"]}
        elif kind in ("Add", "Multiply"):
            layer = {"type": kind.lower() if kind == "Add" else "multiply"}
        elif kind == "Concatenate":
            if config["axis"] not in (-1, len(self.graph.shape(name))):
                raise _refuse(name, f"Concatenate along axis {config['axis']}: netspec's concat joins channels")
            layer = {"type": "concat"}
        else:
            raise _refuse(name, f"{kind} has no netspec layer",
                          hint="the catalogue's layers are listed in the README (netspec schema prints them)")
        self.activation[name] = activation
        return layer

    def _kind(self, name: str) -> str | None:
        return next((e["class_name"] for e in self.graph.layers if e["name"] == name), None)

    def _activation_layer(self, name: str, kind: str, config: dict[str, Any]) -> dict[str, Any]:
        if kind == "Softmax":
            if config.get("axis", -1) != -1:
                raise _refuse(name, "a softmax over another axis than the last has no netspec layer")
            return {"type": "softmax"}
        if kind == "ReLU":
            if config.get("negative_slope", 0) or config.get("threshold", 0) or \
                    config.get("max_value") not in (None, 6, 6.0):
                raise _refuse(name, "ReLU with a slope, a threshold or a ceiling other than 6 has no netspec layer")
            return {"type": "relu6" if config.get("max_value") else "relu"}
        activation = _activation(config["activation"], name)
        if activation is None or activation not in SHORTHAND_ACTIVATIONS and activation != "softmax":
            return {"type": activation or "identity"}
        return {"type": activation}
