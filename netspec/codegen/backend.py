"""The backend plugin interface. A backend turns a CheckedNet into framework source code, builds
the live model from that very source, and exports it. Backends are found through the entry-point
group ``netspec.backends`` and only the one asked for is imported."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from netspec.errors import SetupError, UsageError, did_you_mean
from netspec.files.outputs import check_folder, check_target

ENTRY_POINT_GROUP = "netspec.backends"
INSTALL_HINTS = {
    "torch": 'pip install -e ".[torch]"',
    "keras": 'pip install -e ".[keras]"',
}


@dataclass(frozen=True)
class Artifact:
    """A file a backend wrote."""

    path: Path
    format: str


@runtime_checkable
class Backend(Protocol):
    """What a framework plugin provides."""

    name: str
    export_formats: tuple[str, ...]
    bench_loops: tuple[str, ...]  # `netspec bench --loops`: netspec's trainer first, then the reference loops

    def emit(self, net) -> str:
        """Standalone source code for the network (imports only the framework)."""

    def load(self, net, source: str | None = None, weights: str | Path | None = None) -> Any:
        """The live model, built by executing ``source`` (emitted when not given)."""

    def train(self, net, options, run, console=None) -> list[dict]:
        """Train with the spec's recipe into ``run`` (a RunDir); returns the metrics records."""

    # what `netspec train` asks of it: the fast-path switches it honours (netspec.train.FAST_PATH_PARTS),
    # the distributions whose versions a run records, and whether a launcher may start several
    # processes of one run (data-parallel), with this process's place among them
    training_switches: tuple[str, ...]
    version_packages: tuple[str, ...]
    data_parallel: bool

    def process(self) -> tuple[int, int]:
        """This process's rank and the number of processes of the run (0, 1 when not launched so)."""

    def trains_in_host_memory(self, device: str) -> bool:
        """Whether training on ``device`` (auto, cpu, cuda:N) keeps the activations in this
        machine's memory (the CPU), where they count against what is available."""

    def bench(self, net, settings) -> tuple[list, str, dict[str, str]]:
        """Training throughput (netspec.train.bench): the result rows, the device's name, versions."""

    def export(self, net, out_dir: Path, formats: list[str], *, weights: str | Path | None = None,
               force: bool = False) -> list[Artifact]:
        """Write the requested formats into ``out_dir``."""

    # Weights between backends (netspec convert), through the neutral layout (netspec.files.weights):
    # numpy arrays keyed and shaped as PyTorch's state dict.
    weights_read: tuple[str, ...]  # the endings of the weights files it reads
    weights_written: str  # the ending of the weights file it writes

    def read_weights(self, net, path: Path) -> dict[str, Any]:
        """The weights in ``path``, checked strictly against the spec, in the neutral layout."""

    def write_weights(self, net, state: Mapping[str, Any], path: str, source: str) -> None:
        """Set neutral-layout ``state`` (from ``source``) on the spec's model, strictly, and save
        it at ``path`` in this backend's own format."""


def require_modules(backend: str, *modules: str) -> None:
    """Raise ImportError naming the first of ``modules`` that is not installed."""
    for module in modules:
        if importlib.util.find_spec(module) is None:
            raise ImportError(f"the {backend} backend needs '{module}', which is not installed")


def load_triton_safely() -> None:
    """Import Triton (when installed) so that it can coexist with TensorFlow in one process.

    TensorFlow and Triton (which torchvision, torch.export and torch.compile import) each bundle
    LLVM. Loaded in the order Triton, TensorFlow, both work; loaded after TensorFlow, Triton's
    library binds to TensorFlow's LLVM symbols and the process segfaults. So: before TensorFlow,
    Triton is simply imported first; after it (a Keras user's script that began with
    ``import keras``), Triton's libraries are loaded with RTLD_DEEPBIND, which makes them use
    their own LLVM. Either way a later ``import torchvision`` or ``torch.compile`` is safe.
    """
    if "triton" in sys.modules or importlib.util.find_spec("triton") is None:
        return
    if "tensorflow" not in sys.modules:
        import triton  # noqa: F401
        return
    deepbind = getattr(os, "RTLD_DEEPBIND", None)
    if deepbind is None:  # not Linux: Triton's wheels are Linux-only, so this is not reached in practice
        raise SetupError.single("TensorFlow is already loaded, and Triton (used by torch) cannot be loaded after it "
                                "on this platform", hint="import torch (or netspec) before keras or tensorflow")
    flags = sys.getdlopenflags()
    sys.setdlopenflags(flags | deepbind)
    try:
        import triton  # noqa: F401
    except ImportError as exc:
        raise SetupError.single(f"Triton (used by torch) cannot be loaded after TensorFlow: {exc}",
                                hint="import torch (or netspec) before keras or tensorflow") from None
    finally:
        sys.setdlopenflags(flags)


def available_backends() -> dict[str, Any]:
    """Registered backend entry points by name (nothing is imported)."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def get_backend(name: str) -> Backend:
    """Import and instantiate the backend ``name``; a clear SetupError when it is not available."""
    found = available_backends()
    if name not in found:
        known = ", ".join(sorted(found)) or "none"
        suggestion = did_you_mean(name, [*found, *INSTALL_HINTS], {"tensorflow": "keras", "pytorch": "torch",
                                                                   "tf": "keras"})
        hint = INSTALL_HINTS.get(name, "a third-party backend registers itself under the entry-point group "
                                       f"'{ENTRY_POINT_GROUP}'")
        if name in INSTALL_HINTS:  # a known backend that is not installed: say how to install it
            hint = f"install it with {INSTALL_HINTS[name]}"
        elif suggestion:
            hint = suggestion
            target = suggestion.split("'")[1]
            if target not in found and target in INSTALL_HINTS:
                hint += f" (install it with {INSTALL_HINTS[target]})"
        what = "is not installed" if name in INSTALL_HINTS else "is unknown"
        raise SetupError.single(f"the backend '{name}' {what} (installed: {known})", hint=hint)
    try:
        return found[name].load()()  # a backend raises ImportError when its framework is missing
    except ImportError as exc:
        hint = INSTALL_HINTS.get(name, f"install the package that provides the '{name}' backend")
        raise SetupError.single(f"the '{name}' backend cannot be used: {exc}", hint=hint) from None


FOLDER_FORMATS = {"savedmodel"}


def output_paths(net, out, out_dir: Path, formats: list[str], suffixes: dict[str, str], backend: str
                 ) -> dict[str, Path]:
    """Where each requested format goes, checked (``out``, a netspec.files.outputs.Outputs, refuses
    existing files without --force) before anything is written; creates ``out_dir``.

    The names: source is ``SPEC_BACKEND.py`` (the spec's name as an importable module name, and
    the backend, so both backends' sources can share a folder: ``alexnet_digits_torch.py``);
    every other format is the spec's own name and the format's ending
    (``alexnet-digits.safetensors``, ``alexnet-digits.weights.h5``), endings that differ between
    the backends."""
    from netspec.codegen.render import module_name

    unknown = [f for f in formats if f not in suffixes]
    if unknown:
        raise UsageError.single(f"unknown export format {unknown[0]!r} for the {backend} backend",
                                hint=f"choose from: {', '.join(suffixes)}")
    paths = {fmt: Path(out_dir) / (f"{module_name(net.spec.name)}_{backend}.py" if fmt == "source"
                                   else f"{net.spec.name}{suffixes[fmt]}") for fmt in dict.fromkeys(formats)}
    check_folder(out_dir)
    for fmt, path in paths.items():
        check_target(path, force=out.force, folder=fmt in FOLDER_FORMATS)
    out.folder(out_dir)
    return paths


def available_memory() -> int | None:
    """Bytes this process may still allocate: the kernel's MemAvailable, or less when a cgroup
    (a container) limits the memory; None when neither can be read."""
    found = []
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        with contextlib.suppress(OSError, ValueError, AttributeError):
            found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    try:
        limit: str | int = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            used = int(Path("/sys/fs/cgroup/memory.current").read_text())
            found.append(max(int(limit) - used, 0))
    except (OSError, ValueError):
        pass
    try:  # an address-space limit (ulimit -v) bounds what can still be mapped
        import resource

        limit = resource.getrlimit(resource.RLIMIT_AS)[0]
        if limit not in (resource.RLIM_INFINITY, -1):
            with open("/proc/self/status") as handle:
                mapped = next(int(line.split()[1]) * 1024 for line in handle if line.startswith("VmSize:"))
            found.append(max(limit - mapped, 0))
    except (ImportError, OSError, ValueError, StopIteration):
        pass
    return min(found) if found else None


FRAMEWORK_BYTES = 512 << 20  # the framework's own memory, roughly


def memory_needed(net, copies: float) -> int:
    """The memory to build ``net`` and hold ``copies`` float32 copies of its weights, all told."""
    return int(net.totals.params * 4 * copies) + FRAMEWORK_BYTES


def require_training_memory(net, copies: float, batch: int, on_host: bool) -> None:
    """Refuse a training run that cannot fit in memory before its folder is made: the weights'
    copies, and on the CPU each example's activations (the checker's estimate, forward and
    backward) times the batch, which a kill for memory would otherwise end with no message."""
    available = available_memory()
    base = memory_needed(net, copies)
    per_example = net.totals.activation_bytes if on_host else 0
    if available is None or base + batch * per_example <= available:
        return
    if base > available or per_example == 0:
        require_memory(net, "training", copies, hint="train a smaller model, or on a machine (or GPU) with more memory")
        return
    fitting = (available - base) // per_example
    raise SetupError.single(
        f"training '{net.spec.name}' on the CPU at batch {batch} needs about {_gib(base + batch * per_example)} of "
        f"memory ({_gib(per_example)} of activations per example, forward and backward), and "
        f"{_gib(available)} is available",
        hint=f"--batch-size {max(fitting, 1)} or less" if fitting >= 1 else "train on a GPU, or a machine with "
                                                                            "more memory")


def require_memory(net, what: str, copies: float,
                   hint: str = "export -f source, which does not build the model, or use a machine with more "
                               "memory") -> None:
    """Refuse ``what`` before building the model when it needs more memory than is available."""
    needed, available = memory_needed(net, copies), available_memory()
    if available is not None and needed > available:
        raise SetupError.single(
            f"{what} needs about {_gib(needed)} of memory for the {net.totals.params:,} parameters of "
            f"'{net.spec.name}', and {_gib(available)} is available", hint=hint)


def model_for_export(backend, net, source: str, formats, *, weights, memory_copies: Mapping[str, float],
                     weight_formats: str):
    """The live model an export needs, built from ``source``, or None when every format is
    source (which never builds it); the memory it needs is checked first."""
    built = [fmt for fmt in formats if fmt != "source"]
    if not built:
        if weights is not None:
            raise UsageError.single("--weights has no effect on a source export",
                                    hint=f"add -f {weight_formats} to write the weights")
        return None
    require_memory(net, f"the {' and '.join(built)} export",
                   1 + max(memory_copies.get(fmt, 0) for fmt in built) + (1 if weights is not None else 0))
    return backend.load(net, source, weights=weights)


def _gib(count: int) -> str:
    return f"{count / 2**30:,.1f} GiB"
