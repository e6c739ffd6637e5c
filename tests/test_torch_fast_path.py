"""The torch fast path's parts, exercised on the CPU: the on-device input pipeline agrees with the
torchvision one, a run with every cheap part on learns, and a bad loss found in arrears (without a
per-step sync) still names its step and keeps the last good checkpoint."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from netspec.errors import RunError

torch = pytest.importorskip("torch")

from netspec import check_file  # noqa: E402
from netspec.codegen.backend import get_backend  # noqa: E402
from netspec.language.spec import DataSpec  # noqa: E402
from netspec.train import TrainOptions  # noqa: E402
from netspec.train.rundir import RunDir  # noqa: E402

from .conftest import SPECS_DIR  # noqa: E402
from .test_training import TINY  # noqa: E402

pytestmark = pytest.mark.torch


def small_net():
    return check_file(SPECS_DIR / "alexnet-torchvision.yaml", ["num_classes=10"], input_shape=(3, 64, 64))


@pytest.mark.parametrize("spec", [DataSpec(dataset="digits"), DataSpec(dataset="digits", resize=72),
                                  DataSpec(dataset="synthetic", resize=70)], ids=["digits", "resize", "synthetic"])
def test_device_pipeline_matches_torchvision_for_evaluation(spec):
    from netspec_torch.data import load_datasets
    from netspec_torch.device_data import DeviceBatches

    net = small_net()
    val = load_datasets(net, spec).val
    device = DeviceBatches(val.images, val.labels, net, spec, train=False, device=torch.device("cpu"))
    x, y = next(device.batches(list(range(6)), 6))
    expected = torch.stack([val[i][0] for i in range(6)])
    assert y.tolist() == [val[i][1] for i in range(6)]
    # torchvision resizes uint8 images in fixed point: the two may differ by one grey level (1/255/std)
    torch.testing.assert_close(x, expected, atol=1.0 / 255 / min(spec.std) + 1e-6, rtol=0)
    assert (x - expected).abs().mean() < 0.005


def test_device_crops_and_flips_repeat_for_the_same_epoch_and_batch():
    from netspec_torch.data import load_datasets
    from netspec_torch.device_data import DeviceBatches

    net, spec = small_net(), DataSpec(dataset="digits", resize=80, random_crop=True, hflip=True)
    train = load_datasets(net, spec).train
    device = DeviceBatches(train.images, train.labels, net, spec, train=True, device=torch.device("cpu"),
                           channels_last=True)
    first = [x for x, _ in device.batches(list(range(8)), 4, epoch=2)]
    resumed = [x for x, _ in device.batches(list(range(4, 8)), 4, epoch=2, first_batch=1)]
    torch.testing.assert_close(first[1], resumed[0], atol=0, rtol=0)
    other = next(device.batches(list(range(4)), 4, epoch=3))[0]
    assert first[0].shape == (4, 3, 64, 64) and first[0].is_contiguous(memory_format=torch.channels_last)
    assert not torch.equal(first[0], other)
    # each image gets its own crop: compare with a centre crop of the same images
    centre = DeviceBatches(train.images, train.labels, net, spec, train=False, device=torch.device("cpu"))
    assert not torch.equal(first[0], next(centre.batches(list(range(4)), 4))[0])


def train(spec, run_dir, **options):
    net = check_file(spec)
    run = RunDir(run_dir, resume=False)
    try:
        run.write_run_info({"spec_file": str(spec), "overrides": [], "backend": "torch"})
        return get_backend("torch").train(net, TrainOptions(device="cpu", progress=False, **options), run)
    finally:
        run.close()


def test_a_run_with_the_fast_path_parts_on_learns(write_spec, tmp_path):
    records = train(write_spec(TINY), tmp_path / "run", device_data=True, channels_last=True, bf16=True)
    assert records[-1]["train_loss"] < records[0]["train_loss"]
    assert records[-1]["val_top1"] > 0.5


def test_a_bad_loss_found_in_arrears_names_its_step(write_spec, tmp_path, monkeypatch):
    import torch.nn.functional as F

    from netspec_torch.trainer import TorchTrainer

    spec = write_spec(TINY)
    real_init, real_loss, calls = TorchTrainer.__init__, F.cross_entropy, {"n": 0}

    def deferred_checks(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        self.fast = dataclasses.replace(self.fast, check_every=10)  # as on a GPU

    def poisoned(*args, **kwargs):
        loss = real_loss(*args, **kwargs)
        if torch.is_grad_enabled():
            calls["n"] += 1
            if calls["n"] == 27:  # epoch 2, step 4: found at the next read-back (step 10)
                return loss * float("nan")
        return loss

    monkeypatch.setattr(TorchTrainer, "__init__", deferred_checks)
    monkeypatch.setattr(F, "cross_entropy", poisoned)
    with pytest.raises(RunError, match=r"the loss became nan at epoch 2, step 4"):
        train(spec, tmp_path / "run")
    from netspec.train.checkpoints import CheckpointStore

    files = CheckpointStore(tmp_path / "run" / "checkpoints").files("last")
    state = torch.load(files["state"], weights_only=True)
    assert state["loop"]["epoch"] == 1  # the checkpoint written after the bad step was never written
    weights = get_backend("torch").load(check_file(spec), weights=tmp_path / "run" / "checkpoints" / "last.safetensors")
    assert all(np.isfinite(p.detach().numpy()).all() for p in weights.parameters())


def test_cpu_training_keeps_freed_memory_on_linux(monkeypatch, write_spec, tmp_path):
    import sys

    import netspec_torch.trainer as trainer_module
    from netspec.train.memory import keep_freed_memory

    if sys.platform.startswith("linux"):
        assert keep_freed_memory() is True  # glibc accepted both settings
    calls = []
    monkeypatch.setattr(trainer_module, "keep_freed_memory", lambda: calls.append(1) or True)
    train(write_spec(TINY), tmp_path / "run", max_steps_per_epoch=1)
    assert calls  # the CPU trainer asks for it


@pytest.mark.slow
def test_compiling_on_the_cpu_prints_no_cuda_warning(write_spec, tmp_path):
    """torch.compile on the CPU imports torch.utils.cpp_extension, which would warn on stderr that
    no CUDA runtime was found, on every `train --compile` without a GPU."""
    import subprocess
    import sys

    command = ["train", str(write_spec(TINY)), "--compile", "--epochs", "1", "--max-steps", "2",
               "--run-dir", str(tmp_path / "run"), "--device", "cpu"]
    result = subprocess.run([sys.executable, "-m", "netspec", *command], capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    assert "CUDA_HOME" not in result.stderr and "No CUDA runtime" not in result.stderr, result.stderr


@pytest.mark.parametrize(("spec", "bf16", "channels_last"), [
    ("alexnet-digits.yaml", True, False),  # no batch norm: channels-last gains nothing (measured)
    ("zoo/resnet18.yaml", True, True),  # batch norm in bf16: 7% faster channels-last
    ("zoo/resnet18.yaml", False, False),  # in fp32 it was not measured to pay
])
def test_the_cpu_takes_channels_last_where_it_pays(monkeypatch, spec, bf16, channels_last):
    from netspec_torch import trainer

    monkeypatch.setattr(trainer, "cpu_has_native_bf16", lambda: bf16)
    net = check_file(SPECS_DIR / spec)
    fast = trainer.FastPath.resolve(TrainOptions(), torch.device("cpu"), net)
    assert (fast.channels_last, fast.bf16, fast.compile, fast.fused_optimizer) == (channels_last, bf16, False, True)
    assert ("channels_last: batch norm in bf16" in fast.describe()) is channels_last
    asked = trainer.FastPath.resolve(TrainOptions(channels_last=False), torch.device("cpu"), net)
    assert not asked.channels_last  # what the user says goes


@pytest.mark.parametrize(("spec", "device", "uniform"), [
    ("alexnet-digits.yaml", "cpu", True),
    ("alexnet-digits.yaml", "cuda", False),  # on a GPU bernoulli_ is fast
    ("zoo/resnet18.yaml", "cpu", False),  # nothing to swap
])
def test_the_cpu_draws_dropout_masks_with_torch_rand(spec, device, uniform):
    from netspec_torch import trainer

    net = check_file(SPECS_DIR / spec)
    fast = trainer.FastPath.resolve(TrainOptions(), torch.device(device), net)
    assert fast.uniform_dropout is uniform
    assert ("uniform_dropout: bernoulli_ is serial on the CPU" in fast.describe()) is uniform
    for asked in (True, False):  # what the user says goes, with no reason given for it
        fast = trainer.FastPath.resolve(TrainOptions(uniform_dropout=asked), torch.device(device), net)
        assert fast.uniform_dropout is asked and "bernoulli_" not in fast.describe()


def test_the_cpu_trainer_swaps_the_dropout_modules_of_its_model(write_spec, tmp_path):
    from netspec.codegen.backend import get_backend
    from netspec.train.rundir import RunDir
    from netspec_torch.dropout import UniformMaskDropout
    from netspec_torch.trainer import TorchTrainer

    net = check_file(write_spec("""
        name: small
        input: [1, 8, 8]
        layers:
          - {type: flatten}
          - {name: drop, type: dropout, p: 0.25}
          - {name: fc, type: linear, out_features: 10}
        data: {dataset: digits}
    """))
    for asked, kind in ((None, UniformMaskDropout), (False, torch.nn.Dropout)):
        run = RunDir(tmp_path / f"run-{asked}", resume=False)
        try:
            options = TrainOptions(device="cpu", progress=False, uniform_dropout=asked)
            trainer = TorchTrainer(get_backend("torch"), net, options, run)
            assert [(type(m), m.p) for m in trainer.model.modules() if isinstance(m, torch.nn.Dropout)] == [
                (kind, 0.25)]
        finally:
            run.close()
