"""Training throughput on the Keras backend: our trainer's own step (``train_on_batch`` on the
tf.data pipeline, from synthetic uint8 images at the spec's input size through the spec's
augmentation). The reference loops of ``netspec bench`` are PyTorch loops and run with
``--backend torch``."""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np

from netspec.bench import BenchRow, BenchSettings
from netspec.check import CheckedNet
from netspec.errors import SpecError
from netspec.train import TrainOptions
from netspec.train.rundir import RunDir


def bench(backend, net: CheckedNet, settings: BenchSettings) -> tuple[list[BenchRow], str, dict[str, str]]:
    from netspec_keras import import_keras
    from netspec_keras.trainer import KerasTrainer

    keras = import_keras()
    others = [loop for loop in settings.loops if loop != "netspec"]
    if others:
        raise SpecError.single(f"the keras backend benchmarks only its own trainer, not {', '.join(others)}",
                               hint="pass --loops netspec, or run the reference loops with --backend torch")
    rows = []
    for batch in settings.batch_sizes:
        spec = net.spec.model_copy(update={
            "data": net.spec.data.model_copy(update={"dataset": "synthetic"}),
            "training": net.spec.training.model_copy(update={"batch_size": batch})})
        synthetic_net = dataclasses.replace(net, source=dataclasses.replace(net.source, spec=spec))
        with tempfile.TemporaryDirectory() as tmp:
            run = RunDir(Path(tmp) / "run", resume=False)
            try:
                trainer = KerasTrainer(backend, synthetic_net, TrainOptions(device=settings.device, progress=False),
                                       run)
                trainer.reset_sums(0.0, 0)
                indices = np.random.default_rng(0).integers(0, trainer.train_size(),
                                                            batch * (settings.warmup + settings.steps))
                batches = iter(trainer.batches(indices.tolist(), epoch=0))
                started = time.perf_counter()
                for _ in range(settings.warmup):
                    trainer.train_step(next(batches))
                warmup = time.perf_counter() - started
                started = time.perf_counter()
                for _ in range(settings.steps):  # each step reads its loss back: the time is end to end
                    trainer.train_step(next(batches))
                elapsed = time.perf_counter() - started
            finally:
                run.close()
        rows.append(BenchRow("netspec", batch, batch * settings.steps / elapsed, 1000 * elapsed / settings.steps,
                             warmup, None, note=f"keras on {keras.backend.backend()}"))
    return rows, _device_name(), {"keras": keras.__version__, "backend": keras.backend.backend()}


def _device_name() -> str:
    import os

    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    return f"GPU ({gpus[0].name})" if gpus else f"CPU ({os.cpu_count()} cores)"
