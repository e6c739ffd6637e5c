"""The Keras side of the shared training loop (netspec.train.loop): the model built from the spec's
generated source, compiled with the recipe's optimizer and loss, stepped with ``train_on_batch``
on tf.data batches (netspec_keras.data).

Checkpoints: ``{tag}.safetensors`` holds the weights in PyTorch's layout, so one file serves
``netspec export`` and ``convert`` for either backend; ``{tag}.state.safetensors`` holds the
optimizer's variables and the dropout seed states, with the loop state and the weights' SHA-256
as JSON metadata (no pickle anywhere).

Weight decay follows PyTorch's meaning: for SGD and Adam it is an L2 penalty on every trainable
variable (gradient + decay × weight), for AdamW it is decoupled, as in Keras' AdamW.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from netspec.analysis.checker import CheckedNet
from netspec.errors import RunError, SetupError
from netspec.train import TrainOptions
from netspec.train.checkpoints import damaged_checkpoint
from netspec.train.hardware import cpu_has_native_bf16
from netspec.train.loop import EpochLoop, NonFiniteLoss, outputs_probabilities, top_k_hits
from netspec.train.memory import keep_freed_memory
from netspec.train.rundir import RunDir
from netspec.train.safetensors_stream import write_safetensors
from netspec_keras import import_keras, set_from_torch_layout, torch_layout_state
from netspec_keras.data import load_data

STATE_FORMAT = "netspec-keras-state-1"


def make_optimizer(keras, recipe):
    opt = recipe.optimizer
    if opt.name == "sgd":
        return keras.optimizers.SGD(learning_rate=opt.lr, momentum=opt.momentum,
                                    nesterov=opt.nesterov and opt.momentum > 0)
    if opt.name == "adam":
        return keras.optimizers.Adam(learning_rate=opt.lr, epsilon=1e-8)  # PyTorch's epsilon
    return keras.optimizers.AdamW(learning_rate=opt.lr, weight_decay=opt.weight_decay, epsilon=1e-8)


def add_l2_decay(keras, model, recipe) -> None:
    """PyTorch's coupled weight decay (SGD, Adam): decay/2 × w² per variable adds decay × w to its gradient."""
    decay = recipe.optimizer.weight_decay
    if decay and recipe.optimizer.name in ("sgd", "adam"):
        for variable in model.trainable_variables:
            variable.regularizer = keras.regularizers.L2(decay / 2)


def pick_device(requested: str) -> None:
    """Keras places work itself (a GPU when TensorFlow sees one); --device cpu hides the GPUs."""
    import tensorflow as tf

    if requested == "cpu":
        with contextlib.suppress(RuntimeError):  # the GPUs were initialized already: too late to hide them
            tf.config.set_visible_devices([], "GPU")
    elif requested.startswith("cuda") and not tf.config.list_physical_devices("GPU"):
        raise SetupError.single(f"--device {requested}: TensorFlow sees no GPU here", hint="use --device cpu")


def on_gpu() -> bool:
    import tensorflow as tf

    return bool(tf.config.get_visible_devices("GPU"))


def compile_for_training(keras, model, net: CheckedNet, *, jit_compile: bool | str = "auto"):
    """Compile ``model`` with the spec's recipe (optimizer, learning rate, weight decay, loss with
    label smoothing) and the metrics the loop reads; returns the optimizer."""
    recipe, probabilities = net.spec.training, outputs_probabilities(net)
    smoothing = recipe.label_smoothing
    add_l2_decay(keras, model, recipe)
    optimizer = make_optimizer(keras, recipe)
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.CategoricalCrossentropy(from_logits=not probabilities, label_smoothing=smoothing),
        # the reported loss is the cross-entropy alone (without the L2 penalty), as torch reports it
        metrics=[keras.metrics.CategoricalCrossentropy(name="ce", from_logits=not probabilities,
                                                       label_smoothing=smoothing),
                 keras.metrics.CategoricalAccuracy(name="acc")],
        jit_compile=jit_compile)
    return optimizer


def build_model(keras, backend, net: CheckedNet, *, bf16: bool):
    """The spec's model; with ``bf16`` its layers compute in bfloat16 on float32 weights (Keras'
    mixed_bfloat16 policy, set only while the layers are made)."""
    if not bf16:
        return backend.load(net)
    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        return backend.load(net)
    finally:
        keras.config.set_dtype_policy(before)


class KerasTrainer(EpochLoop):
    backend_name = "keras"
    state_file = "state.safetensors"

    def __init__(self, backend, net: CheckedNet, options: TrainOptions, run: RunDir, console=None):
        super().__init__(net, options, run, console)
        self.keras = keras = import_keras()
        pick_device(options.device)
        gpu = on_gpu()
        self.write_in_background = gpu  # the host's cores are free meanwhile
        if not gpu:
            # a checkpoint reads the weights and Adam's state out into new arrays (684 MB on the main
            # command), each paid in page faults without this: its checkpoints took 16.6 s, 11.0 s
            # with it (benchmarks/results/profile_alexnet_digits_keras_cpu*.json; netspec.train.memory)
            keep_freed_memory()
        # mixed bfloat16 where the CPU has it natively (the main command's steps: 49 s -> 42 s,
        # benchmarks/results/train_alexnet_digits_keras_main_*.json); the weights stay float32
        self.bf16 = options.bf16 if options.bf16 is not None else (not gpu and cpu_has_native_bf16())
        self.bf16_reason = "" if options.bf16 is not None or gpu else (
            " (bf16: the CPU has bfloat16)" if self.bf16 else " (no bf16: the CPU has no native bfloat16)")
        keras.utils.set_random_seed(self.recipe.seed)  # initial weights and dropout seeds
        self.data = load_data(net, net.spec.data, seed=self.recipe.seed)
        self.model = build_model(keras, backend, net, bf16=self.bf16)
        self.probabilities = outputs_probabilities(net)
        self.optimizer = compile_for_training(keras, self.model, net)
        self.optimizer.build(self.model.trainable_variables)
        self.sums = (0.0, 0)

    # --- steps ---------------------------------------------------------------------------------

    def train_size(self) -> int:
        return len(self.data.train)

    def batches(self, indices: list[int], epoch: int):
        return self._guarded(self.data.train_batches(indices, epoch, self.recipe.batch_size))

    def describe(self) -> str:
        import keras

        devices = [str(device) for device in keras.distribution.list_devices()]
        # one device is named as torch names it ("cpu", not "cpu:0"); several are listed
        shown = devices[0].partition(":")[0] if len(devices) == 1 else ", ".join(devices) or "cpu"
        precision = "mixed bf16" if self.bf16 else "fp32"
        return (f"device {shown}, Keras {keras.__version__} on {keras.config.backend()}, "
                f"{precision}{self.bf16_reason}")

    def _guarded(self, dataset):
        """Iterate a tf.data pipeline, turning its failures into the user's error."""
        import tensorflow as tf

        iterator = iter(dataset)
        while True:
            try:
                batch = next(iterator)
            except StopIteration:
                return
            except tf.errors.OpError as exc:
                raise self.data.explain(exc) from None
            yield batch

    def reset_sums(self, loss: float, correct: int) -> None:
        self.sums = (loss, correct)

    def read_sums(self) -> tuple[float, int]:
        return self.sums

    def train_step(self, batch) -> int:
        x, y = batch
        logs = self.model.train_on_batch(x, y, return_dict=True)
        if not np.isfinite(logs["loss"]):
            raise NonFiniteLoss(logs["loss"])
        count = int(y.shape[0])
        loss, correct = self.sums
        self.sums = (loss + logs["ce"] * count, correct + round(logs["acc"] * count * self.positions))
        return count

    def set_lr(self, lr: float) -> None:
        self.optimizer.learning_rate = lr

    def evaluate(self) -> tuple[float, float, float]:
        smoothing, k = self.recipe.label_smoothing, min(5, self.net.output_shape[0])
        total, loss_sum, top1, top5 = 0, 0.0, 0, 0
        for x, y in self._guarded(self.data.val_batches(self.recipe.batch_size)):
            out = np.asarray(self.model.predict_on_batch(x), dtype=np.float64)
            labels = y.numpy()
            if out.ndim > 2:  # a class per pixel (channels last): each pixel counts as a sample
                out, labels = out.reshape(-1, out.shape[-1]), labels.reshape(-1)
            log_p = np.log(np.clip(out, 1e-12, None)) if self.probabilities else _log_softmax(out)
            nll = -log_p[np.arange(len(labels)), labels]
            loss_sum += float(((1 - smoothing) * nll - smoothing * log_p.mean(axis=1)).sum())
            hits1, hits5 = top_k_hits(out, labels, k)
            top1, top5, total = top1 + hits1, top5 + hits5, total + len(labels)
        return loss_sum / total, top1 / total, top5 / total

    # --- checkpoints -------------------------------------------------------------------------------

    def _extra_variables(self) -> list[Any]:
        """Model state beyond the weights (dropout seed generators), in layer order (their paths
        carry process-wide counters, so they are keyed by position)."""
        weights = {id(v) for v in self.model.weights}
        return [v for v in self.model.variables if id(v) not in weights]

    def checkpoint_files(self, *, snapshot: bool) -> dict[str, tuple[str, Any]]:
        """The arrays are copies read out of the variables, so they are a snapshot either way; they
        are streamed to the file, not first assembled into one (netspec.train.safetensors_stream)."""
        weights = {k: np.ascontiguousarray(v) for k, v in torch_layout_state(self.model, self.net).items()}
        tensors = {f"optimizer/{i}": np.asarray(v.numpy()) for i, v in enumerate(self.optimizer.variables)}
        tensors |= {f"model/{i}": np.asarray(v.numpy()) for i, v in enumerate(self._extra_variables())}
        metadata = {"format": STATE_FORMAT, "loop": json.dumps(self.state)}
        return {"weights": ("weights.safetensors", lambda handle: write_safetensors(
                    handle, weights, {"spec": self.net.spec.name, "layout": "torch", "trained_with": "keras"})),
                "state": (self.state_file, lambda handle: write_safetensors(handle, tensors, metadata))}

    def load_checkpoint(self, files: dict[str, Path]) -> dict[str, Any]:
        from safetensors import safe_open
        from safetensors.numpy import load_file

        weights, state_path = files["weights"], files["state"]
        try:
            with safe_open(state_path, framework="numpy") as handle:
                metadata = handle.metadata() or {}
                tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
        except Exception as exc:  # safetensors reports a torn file with its own error type
            raise damaged_checkpoint(state_path, str(exc).splitlines()[0]) from None
        if metadata.get("format") != STATE_FORMAT or "loop" not in metadata:
            raise damaged_checkpoint(state_path, "it is not a netspec Keras training state")
        set_from_torch_layout(self.model, self.net, load_file(weights))
        for prefix, variables in (("optimizer", self.optimizer.variables), ("model", self._extra_variables())):
            if sum(key.startswith(f"{prefix}/") for key in tensors) != len(variables):
                raise RunError.single(f"the checkpoint in {weights.parent} was written for another model or "
                                      "optimizer", hint="resume with the spec and recipe the run started with")
            for i, variable in enumerate(variables):
                variable.assign(tensors[f"{prefix}/{i}"])
        return json.loads(metadata["loop"])


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
