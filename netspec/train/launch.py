"""Starting and resuming a training run: what `netspec train` does between parsing its options and
printing its results.

A new run records everything that decides its course in its folder: the resolved spec
(``spec.yaml``), the options that shape it (``run.json``: backend, input size, steps per epoch),
and its data folder as an absolute path. ``--resume`` reads those back and nothing else, so a run
resumed from another folder, or after its spec file was edited, continues the same curve.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netspec import __version__
from netspec.analysis.checker import CheckedNet, check_file
from netspec.errors import RunError, UsageError
from netspec.language.catalog import spec_path as find_spec
from netspec.train import FAST_PATH_PARTS, TrainingStopped, TrainOptions
from netspec.train.rundir import RunDir


def switch_flag(name: str, on: bool) -> str:
    """The command-line flag of a fast-path switch: switch_flag("bf16", False) == "--no-bf16"."""
    return f"--{'' if on else 'no-'}{name.replace('_', '-')}"


def refuse_switches_of_other_backends(backend: str, switches: Mapping[str, bool | None]) -> None:
    """A fast-path switch that ``backend`` does not honour (Backend.training_switches) is a mistake,
    not something to ignore silently."""
    from netspec.codegen.backend import get_backend

    chosen = get_backend(backend)
    foreign = [switch_flag(name, value) for name, value in switches.items()
               if value is not None and name not in chosen.training_switches]
    if foreign:
        several = len(foreign) > 1
        takes = ", ".join(f"--{name.replace('_', '-')}" for name in chosen.training_switches)
        raise UsageError.single(
            f"{', '.join(foreign)}: {'not training switches' if several else 'not a training switch'} of the "
            f"{backend} backend", hint=f"leave {'them' if several else 'it'} out with --backend {backend}"
                                       + (f" (it takes {takes})" if takes else ""))


def follower_process(backend: str) -> bool:
    """Whether this process follows another in a data-parallel run of ``backend`` (only the first
    prints)."""
    from netspec.codegen.backend import get_backend

    return get_backend(backend).process()[0] > 0


# what --resume may not change: the run continues as it was started
FIXED_ON_RESUME = ("SPEC", "--backend", "--run-dir", "--data", "--data-path", "--batch-size", "--lr", "--input",
                   "--set", "--max-steps")


@dataclass
class RunRequest:
    """One `netspec train` invocation, as parsed from the command line."""

    spec: Path | None = None
    backend: str = "torch"
    overrides: list[str] = field(default_factory=list)  # --set and the shorthand options, as KEY=VALUE
    input_shape: tuple[int, ...] | None = None
    epochs: int | None = None
    max_steps: int | None = None
    run_dir: Path | None = None
    resume: Path | None = None
    options: TrainOptions = field(default_factory=TrainOptions)


@dataclass
class RunResult:
    net: CheckedNet
    backend: str
    folder: Path
    records: list[dict[str, Any]]


def train_run(request: RunRequest, console=None) -> RunResult:
    """Start or resume a run and train it to its last epoch. A new run that fails before its first
    checkpoint leaves nothing behind; TrainingStopped when it was interrupted (a checkpoint saved)."""
    from netspec.codegen.backend import get_backend, require_training_memory

    if request.resume is not None:
        info = RunDir.read_info(request.resume)
        spec_path = request.resume / "spec.yaml"
        if not spec_path.is_file():
            raise RunError.single(f"{request.resume} has no spec.yaml, so it cannot be resumed",
                                  hint="runs written by an earlier netspec (without spec.yaml) cannot be "
                                       "resumed; start it again")
        backend = info["backend"]
        overrides = [f"training.epochs={request.epochs}"] if request.epochs is not None else []
        input_shape = tuple(info["input_shape"]) if info.get("input_shape") else None
        net = check_file(spec_path, overrides, input_shape=input_shape)
        max_steps = info.get("max_steps")
        # the run's own fast-path switches: a resumed run equals an uninterrupted one only with the
        # same precision, kernels and random streams, so a resume may not change them
        recorded = info.get("fast_path") or {}
        changed = [switch_flag(name, value) for name in FAST_PATH_PARTS
                   if (value := getattr(request.options, name)) is not None and value != recorded.get(name)]
        if changed:
            started = ", ".join(switch_flag(name, value) for name, value in recorded.items() if value is not None)
            raise UsageError.single(
                f"--resume continues a run as it was started; {', '.join(changed)} cannot change it",
                hint=f"the run was started with {started}" if started else
                "the run was started with the default fast path: resume without fast-path switches")
        fast_path = {name: recorded.get(name) for name in FAST_PATH_PARTS}
    else:
        if request.spec is None:
            raise UsageError.single("train needs a SPEC, or --resume RUN_DIR")
        backend, input_shape, max_steps = request.backend, request.input_shape, request.max_steps
        fast_path = {name: getattr(request.options, name) for name in FAST_PATH_PARTS}
        net = check_file(request.spec, request.overrides, input_shape=input_shape)
    net.require_one_output("training")
    chosen = get_backend(backend)
    require_training_memory(net, training_copies(net), net.spec.training.batch_size,
                            chosen.trains_in_host_memory(request.options.device))
    rank, processes = chosen.process()
    if processes > 1 and (not chosen.data_parallel or (request.run_dir is None and request.resume is None)):
        raise UsageError.single("a data-parallel run (torchrun) needs --backend torch and --run-dir DIR",
                                hint="every process must write to, and resume from, the same folder")
    folder = request.resume or request.run_dir or Path("runs") / f"{net.spec.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    run = RunDir(folder, resume=request.resume is not None, follower=rank > 0)
    started_here = request.resume is None and rank == 0
    try:
        if request.resume is None:
            assert request.spec is not None  # a new run: checked above
            run.write_spec(_resolved_spec_text(net))
            run.write_run_info({
                "spec_file": str(find_spec(request.spec).resolve()), "overrides": request.overrides,
                "backend": backend,
                "input_shape": list(input_shape) if input_shape else None, "max_steps": max_steps,
                "fast_path": fast_path,
                "netspec_version": __version__, "command": sys.argv, "versions": _versions(chosen.version_packages),
                "spec": net.spec.model_dump(mode="json")})
        elif request.epochs is not None:  # trained for longer (or shorter) than first asked
            resumes = [*info.get("resumes", []), {"epochs": request.epochs, "command": sys.argv}]
            run.write_run_info({**info, "spec": net.spec.model_dump(mode="json"), "resumes": resumes})
        options = TrainOptions(**{**request.options.__dict__, **fast_path, "resume": request.resume is not None,
                                  "max_steps_per_epoch": max_steps, "progress": request.options.progress and rank == 0})
        try:
            records = chosen.train(net, options, run, console)
        except Exception as exc:
            if started_here and not isinstance(exc, TrainingStopped) and not run.has_checkpoint():
                run.discard()  # only what this run wrote; the folder too if this run made it
            raise
    finally:
        run.close()
    return RunResult(net, backend, folder, records if rank == 0 else [])


def training_copies(net: CheckedNet) -> int:
    """float32 copies of the weights that training holds: the weights, their gradients, the
    optimizer's state (Adam two, SGD with momentum one), and while a checkpoint is written in the
    background its snapshot (weights and optimizer state) and the serialised weights. Activations
    come on top (the checker's estimate is per image; batches vary)."""
    optimizer = net.spec.training.optimizer
    state = 2 if optimizer.name in ("adam", "adamw") else int(optimizer.momentum > 0)
    return 2 + state + (1 + state) + 1


def _resolved_spec_text(net: CheckedNet) -> str:
    """The spec as trained, with every variant, param and override applied, and the data folder
    made absolute, as YAML that `netspec check` reads back to the same network."""
    import yaml

    loaded = net.source.loaded
    document = dict(loaded.document if loaded.document is not None else loaded.data)  # modules unexpanded
    data = document.get("data")
    if isinstance(data, dict) and isinstance(data.get("path"), str):
        document["data"] = {**data, "path": str(Path(data["path"]).resolve())}
    header = f"# the resolved spec of this run, written by netspec {__version__}; --resume trains from it\n"
    return header + yaml.safe_dump(document, sort_keys=False, allow_unicode=True)


def _versions(packages: tuple[str, ...]) -> dict[str, str | None]:
    """The versions that shape a training run, read from package metadata (nothing is imported)."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str | None] = {"python": platform.python_version()}
    for package in packages:
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            continue
    return found
