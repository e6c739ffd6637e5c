"""Training throughput on the Keras backend, four loops over the same generated model, all with
the spec's recipe (optimizer, learning rate, weight decay, loss):

- ``netspec``: our trainer's own step (``train_on_batch`` on its tf.data pipeline, from synthetic
  uint8 images at the spec's input size through the spec's augmentation), as it trains;
- ``keras-fit``: the plain loop a Keras user writes, ``model.fit`` in float32 on the same pipeline;
- ``keras-compiled``: ``train_on_batch`` on a batch already in memory, in mixed bfloat16 where the
  CPU has it natively (as the trainer), without XLA;
- ``keras-xla``: the same with ``jit_compile=True`` (XLA).

The timing is netspec.train.bench's (``time_loops``): on the CPU the loops take their rounds in turn.
Every step reads its loss back (``train_on_batch`` returns numbers; ``fit`` returns at its end),
so the times are end to end.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from netspec.analysis.checker import CheckedNet
from netspec.train.bench import BenchRow, BenchSettings, Measuring, repeated, time_loops, trainer_on_synthetic_data
from netspec.train.hardware import cpu_label
from netspec.train.loop import NonFiniteLoss


def bench(backend, net: CheckedNet, settings: BenchSettings) -> tuple[list[BenchRow], str, dict[str, str]]:
    from netspec_keras import import_keras
    from netspec_keras.trainer import KerasTrainer, on_gpu, pick_device

    keras = import_keras()
    pick_device(settings.device)
    gpu = on_gpu()
    loops = {"netspec": _netspec_loop, "keras-fit": _fit_loop, "keras-compiled": _compiled_loop,
             "keras-xla": _xla_loop}
    import tensorflow as tf

    how = Measuring(in_turn=not gpu, failures=(NonFiniteLoss, tf.errors.ResourceExhaustedError))
    rows = []
    for batch in settings.batch_sizes:
        with trainer_on_synthetic_data(KerasTrainer, backend, net, batch, settings) as (trainer, batches):
            # the reference loops' batch, in memory: one batch of the same pipeline
            resident = next(iter(trainer.data.train_batches(list(range(batch)), 0, batch)))
            setups = [(name, loops[name](keras, backend, trainer, batches, resident, settings))
                      for name in settings.loops]
            rows += time_loops(setups, batch, settings, how)
        keras.backend.clear_session()
    name = f"GPU ({tf.config.list_logical_devices('GPU')[0].name})" if gpu else \
        cpu_label(tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count() or 1)  # 0: one a core
    return rows, name, {"keras": keras.__version__, "backend": keras.backend.backend(), "tensorflow": tf.__version__}


@contextlib.contextmanager
def _netspec_loop(keras, backend, trainer, batches, resident, settings) -> Iterator[tuple]:
    yield repeated(lambda: trainer.train_step(next(batches))), f"keras on {keras.backend.backend()}, " \
        f"{'mixed bf16' if trainer.bf16 else 'fp32'}"


@contextlib.contextmanager
def _fit_loop(keras, backend, trainer, batches, resident, settings) -> Iterator[tuple]:
    from netspec_keras.trainer import compile_for_training

    model = backend.load(trainer.net)  # float32: the plain loop
    compile_for_training(keras, model, trainer.net)
    steps_needed = settings.warmup + settings.steps * settings.trials
    indices = [i % trainer.train_size() for i in range(steps_needed * trainer.recipe.batch_size)]
    dataset = trainer.data.train_batches(indices, 0, trainer.recipe.batch_size).repeat()

    def run(steps: int) -> None:
        model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False)

    yield run, "fp32, model.fit on the netspec loop's pipeline"


def _compiled(keras, backend, trainer, resident, *, jit_compile: bool) -> tuple:
    from netspec_keras.trainer import build_model, compile_for_training

    model = build_model(keras, backend, trainer.net, bf16=trainer.bf16)
    compile_for_training(keras, model, trainer.net, jit_compile=jit_compile)
    x, y = resident
    return repeated(lambda: model.train_on_batch(x, y)), f"{'mixed bf16' if trainer.bf16 else 'fp32'}, " \
        f"train_on_batch on a batch in memory{', XLA' if jit_compile else ''}"


@contextlib.contextmanager
def _compiled_loop(keras, backend, trainer, batches, resident, settings) -> Iterator[tuple]:
    yield _compiled(keras, backend, trainer, resident, jit_compile=False)


@contextlib.contextmanager
def _xla_loop(keras, backend, trainer, batches, resident, settings) -> Iterator[tuple]:
    yield _compiled(keras, backend, trainer, resident, jit_compile=True)
