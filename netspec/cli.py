"""The ``netspec`` command line.

Exit codes: 0 success, 2 a user error (bad spec, bad option, missing file), 1 an internal failure.
Framework imports happen inside the commands that need them, so ``netspec check`` stays fast.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from netspec import __version__
from netspec.errors import Location, UsageError, UserError, shown

EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 1

app = typer.Typer(
    name="netspec",
    help="Declarative model specs: check a network before it runs, then emit it for PyTorch or Keras.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

SpecArg = Annotated[Path, typer.Argument(help="The spec: a YAML file, or a packaged spec's name (netspec list).",
                                         show_default=False)]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", metavar="KEY=VALUE",
                 help="Override a param (num_classes=10) or a field by dotted path (training.epochs=5). Repeatable."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print a machine-readable JSON document instead of tables.")]


def _stderr_console():
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def _stdout_console(quiet: bool = False):
    """Results: never wrapped mid-word when written to a file or a pipe."""
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True, quiet=quiet, markup=False, emoji=False)


def _results_console():
    """Tables and text that are results (diff, bench): on a terminal, fitted to it; into a file or a
    pipe, never wrapped (a name cut at column 80 would not be found by grep or diff), unless the
    caller set COLUMNS (rich reads it), as a shell's own variable is not passed on. (check's table
    is the exception: piped, it is the same at any width, a record that scripts compare.)"""
    from rich.console import Console

    fitted = sys.stdout.isatty() or os.environ.get("COLUMNS", "").strip().isdigit()
    return Console(highlight=False, soft_wrap=not fitted, width=None if fitted else 1 << 14)


def _plain_flags_in_help() -> None:
    """typer 0.29 shows a type after every option in --help, '<bool>' even after flags (--force,
    --help), which take no value: show nothing there."""
    from typer.core import TyperOption

    shown = getattr(TyperOption, "display_type_rich", None)
    if shown is None or getattr(shown, "netspec", False):
        return

    def display_type_rich(self, ctx):
        return None if getattr(self, "is_flag", False) else shown(self, ctx)

    display_type_rich.netspec = True  # type: ignore[attr-defined]  # a mark on the patch, read back above
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]  # deliberate patch of typer


_plain_flags_in_help()


@contextmanager
def user_errors(as_json: bool = False):
    """Turn a UserError into its message and exit code 2; nothing else is caught here."""
    try:
        yield
    except UserError as exc:
        if as_json:
            doc = {"ok": False, "errors": [p.to_json() for p in exc.problems]}
            typer.echo(json.dumps(doc, indent=2))
        else:
            _stderr_console().print(exc.format(), markup=False, emoji=False)  # user text as written
        raise typer.Exit(EXIT_USER_ERROR) from None


def parse_input_shape(text: str | None) -> tuple[int, ...] | None:
    """'3x227x227' (C×H×W), '8x128' (C×L) or '784' -> a tuple; UsageError when malformed."""
    if text is None:
        return None
    if not re.fullmatch(r"\s*\d+(\s*[x×,]\s*\d+)*\s*", text):
        raise UsageError.single(f"--input must look like 3x224x224 (channels x height x width), got {text!r}",
                                Location(f"--input {text}"))
    from netspec.layers.base import INPUT_RANKS  # the layer catalogue (pydantic) only where an --input is given

    dims = tuple(int(d) for d in re.split(r"[x×,]", text.replace(" ", "")))
    if len(dims) not in INPUT_RANKS or min(dims) < 1:
        raise UsageError.single(f"--input must be C x H x W (or C x L, or F) with positive sizes, got {text!r}",
                                Location(f"--input {text}"))
    return dims


@app.command()
def check(
    spec: SpecArg,
    set_: SetOpt = None,
    input_: Annotated[str | None, typer.Option(
        "--input", metavar="CxHxW", help="Check with this input size instead of the spec's, e.g. 3x227x227.")] = None,
    batch: Annotated[int, typer.Option(min=1, help="Batch size for the memory estimate.")] = 1,
    as_json: JsonOpt = False,
) -> None:
    """Infer every layer's shape, parameters and MACs, and report every mistake at once.

    Pure Python: no framework is imported.
    """
    from netspec.analysis.checker import check_file
    from netspec.analysis.report import render_summary, summary_json

    with user_errors(as_json):
        net = check_file(spec, set_ or [], input_shape=parse_input_shape(input_), batch=batch)
    if as_json:
        typer.echo(json.dumps({"ok": True, **summary_json(net)}, indent=2))
        return
    from rich.console import Console

    render_summary(net, Console(highlight=False))


@app.command()
def export(
    spec: SpecArg,
    backend: Annotated[str, typer.Option("--backend", "-b", metavar="torch|keras", help="torch or keras.")] = "torch",
    output: Annotated[Path, typer.Option("-o", "--output", metavar="DIR",
                                         help="Output folder (created if missing); - writes the source to "
                                              "stdout.")] = Path("out"),
    formats: Annotated[list[str] | None, typer.Option(
        "--format", "-f", metavar="FORMAT",
        help="torch: source (default), safetensors, pt2, onnx; keras: source (default), keras, weights "
             "(.weights.h5), savedmodel. Repeatable: all are written, or none.")] = None,
    weights: Annotated[Path | None, typer.Option(
        metavar="FILE", help="Weights to include: .safetensors, a PyTorch state dict (.pt/.pth), or Keras weights "
                             "(.weights.h5/.keras, keras backend).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace files that already exist.")] = False,
    set_: SetOpt = None,
    input_: Annotated[str | None, typer.Option(
        "--input", metavar="CxHxW", help="Export for this input size instead of the spec's, e.g. 3x64x64.")] = None,
) -> None:
    """Write the network for a framework: readable source, weights, or a deployable format.

    Files are named after the spec: SPEC_torch.py / SPEC_keras.py (an importable module name),
    SPEC.safetensors, SPEC.pt2, SPEC.onnx, SPEC.keras, SPEC.weights.h5, SPEC.savedmodel/.
    Every path written is printed on stdout."""
    from netspec.analysis.checker import check_file
    from netspec.codegen.backend import get_backend

    with user_errors():
        net = check_file(spec, set_ or [], input_shape=parse_input_shape(input_))
        chosen = get_backend(backend)
        if str(output) == "-":  # the source on stdout, as a filter would write it
            if (formats or ["source"]) != ["source"] or weights is not None:
                raise UsageError.single("-o - writes the source to stdout; other formats and --weights need a folder",
                                        hint="-o DIR writes them there")
            typer.echo(chosen.emit(net), nl=False)
            return
        artifacts = chosen.export(net, output, formats or ["source"], weights=weights, force=force)
    for artifact in artifacts:
        typer.echo(f"wrote {artifact.path} ({artifact.format})")


@app.command("import")
def import_(
    target: Annotated[str, typer.Argument(help="A Python callable that returns a PyTorch nn.Module or a Keras "
                                               "model (torchvision.models.resnet50, keras.applications.ResNet50, "
                                               "package.module:function), or a saved .pt2 (torch.export), "
                                               ".keras or .onnx file.",
                                          show_default=False)],
    output: Annotated[Path, typer.Option("-o", "--output", metavar="SPEC.yaml", help="The spec to write.")],
    args: Annotated[list[str] | None, typer.Option("--arg", metavar="NAME=VALUE",
                                                   help="An argument of the callable (num_classes=10). "
                                                        "Repeatable.")] = None,
    input_: Annotated[str | None, typer.Option("--input", metavar="CxHxW",
                                               help="The input a PyTorch model takes (default: what it says, "
                                                    "else 3x224x224; saved programs, Keras and ONNX models "
                                                    "say theirs).")] = None,
    weights: Annotated[Path | None, typer.Option(metavar="FILE.safetensors",
                                                 help="Also write the model's weights here, as the spec's "
                                                      "PyTorch state dict.")] = None,
    verify: Annotated[bool, typer.Option("--verify/--no-verify", help="Build the spec's model, load the original's "
                                         "weights strictly and compare outputs before writing (default).")] = True,
    force: Annotated[bool, typer.Option("--force", help="Replace files that already exist.")] = False,
) -> None:
    """Read an existing model as a spec. PyTorch (a live model or a saved .pt2 program): each module
    class one module definition, what differs between its uses params, repeated blocks `repeat`,
    the original's state-dict names. ONNX: the same, from the module paths PyTorch's exporter notes
    on the nodes (else a flat list). Keras: each layer of a functional model, named as in it.

    The spec is written only after a round trip: checked, built, the original's weights loaded
    strictly, and the same outputs on the same inputs (a Keras model's spec in both frameworks).
    What has no netspec layer is refused with where it is (exit 2), and nothing is written."""
    from netspec.importing import import_model
    from netspec.language.yamlio import parse_scalar

    with user_errors():
        arguments = {}
        for item in args or []:
            key, sep, value = item.partition("=")
            if not sep or not key.isidentifier():
                raise UsageError.single(f"--arg must be NAME=VALUE, got {item!r}", Location(f"--arg {item}"))
            arguments[key] = parse_scalar(value)
        imported = import_model(target, arguments, parse_input_shape(input_), output,
                                      weights=weights, verify=verify, force=force)
    console = _stdout_console()
    check = imported.verified
    if check is not None:
        console.print(f"verified: {check['tensors']} tensors loaded strictly, outputs equal (largest difference "
                      f"{check['max_difference']:.2g} on outputs up to {check['output_scale']:.3g})")
        if "torch_difference" in check:
            console.print(f"verified: the spec's PyTorch model agrees with its Keras model (largest difference "
                          f"{check['torch_difference']:.2g})")
    if not input_:
        console.print(f"read at the input {'x'.join(map(str, imported.input_shape))}")
    console.print(f"wrote {shown(imported.spec)} ({imported.layers} layers, "
                  f"{len(imported.text.splitlines())} lines)")
    if imported.weights is not None:
        console.print(f"wrote {shown(imported.weights)} (the spec's state dict, the original's weights)")


@app.command()
def convert(
    spec: SpecArg,
    weights: Annotated[Path, typer.Option(help="Trained weights: PyTorch (.safetensors, .pt, .pth) or Keras "
                                               "(.weights.h5, .keras).")],
    to: Annotated[str, typer.Option("--to", help="The backend to convert to: keras or torch.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Output folder (created if missing).")] = Path("out"),
    force: Annotated[bool, typer.Option("--force", help="Replace files that already exist.")] = False,
    set_: SetOpt = None,
) -> None:
    """Move trained weights between backends (conv OIHW <-> HWIO, linear (out, in) <-> (in, out)).

    The output is named after the weights file: trained.pth -> DIR/trained.weights.h5 (--to keras),
    trained.weights.h5 -> DIR/trained.safetensors (--to torch). Weights must fit the spec exactly."""
    from netspec.analysis.checker import check_file
    from netspec.files.conversion import convert as run_convert

    with user_errors():
        net = check_file(spec, set_ or [])
        artifacts = run_convert(net, weights, to, output, force=force)
    for artifact in artifacts:
        typer.echo(f"wrote {artifact.path} ({artifact.format})")


@app.command()
def train(
    spec: Annotated[Path | None, typer.Argument(help="The spec: a YAML file or a packaged spec's name (not needed "
                                                "with --resume).", metavar="SPEC", show_default=False)] = None,
    backend: Annotated[str | None, typer.Option("--backend", "-b", help="torch (default) or keras.",
                                                show_default=False)] = None,
    data: Annotated[str | None, typer.Option(help="digits (no download), cifar10, imagefolder, synthetic; "
                                             "digit_masks (a label per pixel), code_lines (text).")] = None,
    data_path: Annotated[Path | None, typer.Option(help="Folder of a cifar10 or imagefolder dataset.")] = None,
    epochs: Annotated[int | None, typer.Option(min=1, help="Override the spec's epochs.")] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help="Override the spec's batch size.")] = None,
    lr: Annotated[float | None, typer.Option(min=0, help="Override the spec's learning rate.")] = None,
    max_steps: Annotated[int | None, typer.Option(min=1, help="At most this many steps per epoch.")] = None,
    input_: Annotated[str | None, typer.Option("--input", metavar="CxHxW", help="Train at this input size.")] = None,
    run_dir: Annotated[Path | None, typer.Option(help="Where the run is written (default runs/NAME-TIME).")] = None,
    resume: Annotated[Path | None, typer.Option(help="Continue the run in this folder.")] = None,
    device: Annotated[str, typer.Option(help="auto (a GPU when there is one), cpu, cuda, cuda:N.")] = "auto",
    workers: Annotated[int, typer.Option(min=0, help="Data-loading worker processes.")] = 0,
    device_data: Annotated[bool | None, typer.Option(
        "--device-data/--no-device-data", help="Hold the uint8 dataset on the device and augment there "
        "(torch; default: on for CUDA).", show_default=False)] = None,
    channels_last: Annotated[bool | None, typer.Option(
        "--channels-last/--no-channels-last", help="Channels-last memory format (torch; default: on for CUDA).",
        show_default=False)] = None,
    bf16: Annotated[bool | None, typer.Option(
        "--bf16/--no-bf16", help="bfloat16 compute (torch autocast, Keras mixed_bfloat16; default: on for "
        "CUDA with torch, and on a CPU with native bfloat16).", show_default=False)] = None,
    compile_: Annotated[bool | None, typer.Option(
        "--compile/--no-compile", help="torch.compile the model (torch; default: on for CUDA).",
        show_default=False)] = None,
    uniform_dropout: Annotated[bool | None, typer.Option(
        "--uniform-dropout/--no-uniform-dropout", help="Draw dropout masks with torch.rand, not nn.Dropout's "
        "bernoulli_ (torch; default: on for the CPU, where bernoulli_ is serial).", show_default=False)] = None,
    set_: SetOpt = None,
) -> None:
    """Train the spec's model with its recipe, writing metrics and checkpoints to a run directory.

    Progress goes to stderr; the per-epoch results and the summary to stdout. A new run needs a
    new or empty --run-dir. Data-parallel on several GPUs or machines: launch the same command with
    `torchrun --nproc-per-node N -m netspec train ... --run-dir DIR` (torch backend)."""
    from netspec.train import TrainingStopped, TrainOptions
    from netspec.train.launch import (
        FIXED_ON_RESUME,
        RunRequest,
        follower_process,
        refuse_switches_of_other_backends,
        train_run,
    )

    with user_errors():
        if resume is not None:
            given = (spec, backend, run_dir, data, data_path, batch_size, lr, input_, set_, max_steps)
            # `is not None`: --lr 0 changes a run as much as --lr 0.5 does
            changed = [flag for flag, value in zip(FIXED_ON_RESUME, given, strict=True) if value is not None]
            if changed:
                raise UsageError.single(f"--resume continues a run as it was started; {', '.join(changed)} cannot "
                                        "change it", hint="only --epochs may be given, to train a run for longer")
        switches: dict[str, Any] = {"device_data": device_data, "channels_last": channels_last, "bf16": bf16,
                                    "compile": compile_, "uniform_dropout": uniform_dropout}
        backend = backend or "torch"
        refuse_switches_of_other_backends(backend, switches)
        console = _stdout_console(quiet=follower_process(backend))  # a data-parallel run's leader prints
        overrides = list(set_ or [])
        if data_path is not None:  # a path, quoted so YAML cannot read it as null, a number or a list
            overrides.append(f"data.path={json.dumps(str(data_path))}")
        for key, value in (("data.dataset", data), ("training.epochs", epochs),
                           ("training.batch_size", batch_size), ("training.optimizer.lr", lr)):
            if value is not None:
                overrides.append(f"{key}={value}")
        request = RunRequest(
            spec=spec, backend=backend, overrides=overrides, input_shape=parse_input_shape(input_), epochs=epochs,
            max_steps=max_steps, run_dir=run_dir, resume=resume,
            options=TrainOptions(device=device, workers=workers, **switches))
        try:
            result = train_run(request, console)
        except TrainingStopped as stop:
            console.print(f"stopped: {shown(stop)}")
            raise typer.Exit(130) from None
    if result.records:
        from netspec.train.plot import plot_curves

        folder = result.folder
        curves = plot_curves(result.records, folder / "curves.png", title=f"{result.net.spec.name} ({result.backend})")
        best = max(result.records, key=lambda r: r["val_top1"])
        console.print(f"done: best val top-1 {best['val_top1']:.3f} at epoch {best['epoch']}; "
                      f"metrics in {shown(folder / 'metrics.jsonl')}, curves in {shown(curves)}, "
                      f"checkpoints in {shown(folder / 'checkpoints')}")


@app.command()
def bench(
    spec: Annotated[Path, typer.Argument(help="The spec YAML file.", show_default=False)],
    backend: Annotated[str, typer.Option("--backend", "-b", help="torch or keras.")] = "torch",
    batch_sizes: Annotated[str, typer.Option(help="Comma-separated batch sizes.")] = "128,512,1024",
    steps: Annotated[int, typer.Option(min=1, help="Timed steps per round.")] = 100,
    warmup: Annotated[int, typer.Option(min=1, help="Untimed steps first (compilation included).")] = 5,
    trials: Annotated[int, typer.Option(min=1, help="Timed rounds; the median is reported.")] = 3,
    loops: Annotated[str | None, typer.Option(
        help="Which loops (default: all): netspec, and for torch eager-fp32, compiled-bf16; for keras "
             "keras-fit, keras-compiled, keras-xla.", show_default=False)] = None,
    device: Annotated[str, typer.Option(help="auto (a GPU when there is one), cpu, cuda, cuda:N.")] = "auto",
    peak_tflops: Annotated[float, typer.Option(min=0.001, help="The accelerator's peak, for MFU.")] = 800.0,
    input_: Annotated[str | None, typer.Option("--input", metavar="CxHxW", help="Use this input size.")] = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", metavar="FILE",
                                                help="Also write the results as JSON.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite the -o file if it exists.")] = False,
    set_: SetOpt = None,
) -> None:
    """Measure training throughput: images/s, ms/step, MFU, peak memory and warm-up time, for
    netspec's trainer and the backend's reference loops (torch: plain fp32; bf16 + channels-last +
    compile. keras: a plain model.fit; train_on_batch, compiled; the same with XLA)."""
    from netspec.analysis.checker import check_file
    from netspec.codegen.backend import get_backend
    from netspec.train.bench import BenchSettings, environment, report, table

    with user_errors():
        try:
            sizes = [int(b) for b in batch_sizes.split(",") if b.strip()]
        except ValueError:
            sizes = []
        if not sizes or min(sizes) < 1:
            raise UsageError.single(f"--batch-sizes {batch_sizes!r} is not a list of positive numbers",
                                    hint="for example --batch-sizes 128,512")
        if output is not None:  # before the measuring, not after (and before the backend is looked up)
            from netspec.files.outputs import check_target

            check_target(output, force=force)
        chosen = get_backend(backend)
        chosen_loops = list(chosen.bench_loops) if loops is None else \
            [name.strip() for name in loops.split(",") if name.strip()]
        unknown = [name for name in chosen_loops if name not in chosen.bench_loops]
        if unknown or not chosen_loops:
            raise UsageError.single(f"unknown loop(s) for --backend {chosen.name}: "
                                    f"{', '.join(unknown) or 'none given'}",
                                    hint=f"choose from {', '.join(chosen.bench_loops)}")
        net = check_file(spec, set_ or [], input_shape=parse_input_shape(input_))
        net.require_one_output("a training benchmark")
        settings = BenchSettings(sizes, steps, warmup, trials, device, peak_tflops, chosen_loops)
        rows, device_name, versions = chosen.bench(net, settings)
        doc = report(net.spec.name, net.totals.macs, rows, environment(device_name, versions))
        if output is not None:
            from netspec.files.outputs import write_text

            write_text(output, json.dumps(doc, indent=2) + "\n", force=force)
    _results_console().print(table(doc))
    if output is not None:
        typer.echo(f"wrote {output}")


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="The folder of a `netspec train` run.", show_default=False)],
    output: Annotated[Path | None, typer.Option("-o", "--output", help="The HTML file to write (default: "
                                                "RUN_DIR/report.html).", show_default=False)] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """One static HTML page for a training run: summary, diagram, curves, metrics, command, versions."""
    from netspec.views.run_report import write_report

    with user_errors():
        written = write_report(run_dir, output, force=force)
    typer.echo(f"wrote {written}")


@app.command()
def diff(
    spec_a: Annotated[Path, typer.Argument(help="The first spec.", show_default=False)],
    spec_b: Annotated[Path, typer.Argument(help="The spec to compare it with.", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print the differences as JSON.")] = False,
    everything: Annotated[bool, typer.Option("--all", help="List unchanged layers too.")] = False,
) -> None:
    """Compare two specs: layers added, removed or changed, shapes, parameters and the totals."""
    from netspec.analysis.checker import check_file
    from netspec.views.diff import diff_nets, table

    with user_errors(as_json):
        result = diff_nets(check_file(spec_a), check_file(spec_b))
    if as_json:
        typer.echo(json.dumps(result.to_json(), indent=2))
        return
    console = _results_console()
    console.print(table(result, everything=everything))
    console.print(result.explanation())


@app.command()
def draw(
    spec: Annotated[Path, typer.Argument(help="The spec YAML file.", show_default=False)],
    output: Annotated[Path, typer.Option("-o", "--output", help="The diagram: NAME.svg or NAME.png.")],
    by_block: Annotated[bool, typer.Option("--by-block", help="One box per named block.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    input_: Annotated[str | None, typer.Option("--input", metavar="CxHxW", help="Draw at this input size.")] = None,
    set_: SetOpt = None,
) -> None:
    """Draw the network: one box per layer with its output shape and parameters (SVG or PNG)."""
    from netspec.analysis.checker import check_file
    from netspec.views.diagram import write_diagram

    with user_errors():
        net = check_file(spec, set_ or [], input_shape=parse_input_shape(input_))
        write_diagram(net, output, by_block=by_block, force=force)
    typer.echo(f"wrote {output}")


@app.command("list")
def list_specs(
    pattern: Annotated[str, typer.Argument(help="Only names matching this shell pattern, e.g. 'resnet*'.")] = "*",
) -> None:
    """List the specs that ship with netspec: any command takes one by name (netspec check resnet50)."""
    from netspec.language.catalog import SPECS_ROOT, list_models, packaged_specs

    specs = packaged_specs()
    found = {name: specs[name] for name in list_models(pattern)}
    if not found:
        with user_errors():
            raise UsageError.single(f"no packaged spec matches {pattern!r}", hint="`netspec list` shows them all")
    width = max(map(len, found))
    for name, path in found.items():
        typer.echo(f"{name:<{width}}  {path.relative_to(SPECS_ROOT).as_posix()}")


@app.command()
def schema(
    output: Annotated[Path | None, typer.Option("-o", "--output", metavar="FILE",
                                                help="Write to this file instead of stdout ('-': stdout).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite the -o file if it exists.")] = False,
) -> None:
    """Print the JSON Schema of the spec format, for editor completion and validation."""
    from netspec.language.schema import json_schema

    text = json.dumps(json_schema(), indent=2) + "\n"
    if output is None or str(output) == "-":  # '-' is stdout, as for export
        typer.echo(text, nl=False)
        return
    from netspec.files.outputs import write_text

    with user_errors():
        write_text(output, text, force=force)
    typer.echo(f"wrote {output}")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"netspec {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Show the version and exit.")] = False,
) -> None:
    """netspec: one network definition, checked before it runs, for PyTorch and Keras."""


# Commands that only print: cut short by a closed pipe (`netspec check X | head -1`), they did all
# a reader wanted, and exit 0 as `cat` and `grep` do. Training and writing commands keep exit 1.
READ_ONLY_COMMANDS = ("check", "diff", "list", "schema")


def _stdout_identity() -> tuple[int, int] | None:
    try:
        status = os.fstat(1)
    except OSError:
        return None
    return status.st_dev, status.st_ino


def _stdout_pipe_closed(at_start: tuple[int, int] | None) -> bool:
    """Whether standard output was a pipe whose reader has gone: poll reports an error on it, or
    rich, on EPIPE, has already pointed it at /dev/null (so it is no longer the file it was)."""
    import select

    if at_start is not None and _stdout_identity() != at_start:
        return True
    try:
        poller = select.poll()
        if sys.__stdout__ is None:  # no standard output at all
            return False
        poller.register(sys.__stdout__.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (OSError, ValueError, AttributeError):
        return False


# train's options need this many columns in rich's panels; below it, rich cuts their names short
# (--channels-la…), so help is click's plain text, which wraps instead
RICH_HELP_MIN_COLUMNS = 100


def main() -> None:
    stdout_at_start = _stdout_identity()
    if shutil.get_terminal_size().columns < RICH_HELP_MIN_COLUMNS:
        app.rich_markup_mode = None
    try:
        app()
    except SystemExit as exc:
        command = next((arg for arg in sys.argv[1:] if not arg.startswith("-")), None)
        if exc.code == 1 and command in READ_ONLY_COMMANDS and _stdout_pipe_closed(stdout_at_start):
            raise SystemExit(0) from None
        raise
    except KeyboardInterrupt:
        sys.stderr.write("netspec: interrupted\n")
        raise SystemExit(130) from None
    except Exception as exc:  # an internal failure: say so, and keep the traceback on request
        if os.environ.get("NETSPEC_DEBUG"):
            raise
        # the exception's text may carry a file name or data from the user: escaped, never raw
        sys.stderr.write(f"netspec: internal error: {type(exc).__name__}: {shown(exc)}\n"
                         "rerun with NETSPEC_DEBUG=1 for the traceback, and please report it\n")
        raise SystemExit(EXIT_INTERNAL_ERROR) from None
