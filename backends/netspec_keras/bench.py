"""Training throughput on the Keras backend: our trainer's own step (``train_on_batch`` on the
tf.data pipeline, from synthetic uint8 images at the spec's input size through the spec's
augmentation). The reference loops of ``netspec bench`` are PyTorch loops and run with
``--backend torch``."""

from __future__ import annotations

import statistics
import time

from netspec.bench import BenchRow, BenchSettings, trainer_on_synthetic_data
from netspec.check import CheckedNet
from netspec.errors import SpecError


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
        with trainer_on_synthetic_data(KerasTrainer, backend, net, batch, settings) as (trainer, batches):
            started = time.perf_counter()
            for _ in range(settings.warmup):
                trainer.train_step(next(batches))
            warmup = time.perf_counter() - started
            rounds = []
            for _ in range(settings.trials):
                started = time.perf_counter()
                for _ in range(settings.steps):  # each step reads its loss back: the time is end to end
                    trainer.train_step(next(batches))
                rounds.append(time.perf_counter() - started)
            elapsed = statistics.median(rounds)
        rows.append(BenchRow("netspec", batch, batch * settings.steps / elapsed, 1000 * elapsed / settings.steps,
                             warmup, None, note=f"keras on {keras.backend.backend()}"))
    return rows, _device_name(), {"keras": keras.__version__, "backend": keras.backend.backend()}


def _device_name() -> str:
    import os

    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    return f"GPU ({gpus[0].name})" if gpus else f"CPU ({os.cpu_count()} cores)"
