"""What the commands that write (export, convert, draw, report, schema, bench) promise about their
outputs: existing paths are replaced only with --force and only when they are files; a command
writes all its outputs or none; a failed write is a clean user error; a source export never builds
the model, and the formats that do refuse when the memory is not there."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from netspec.cli import app
from netspec.errors import OutputError

from .conftest import BAD_SPECS_DIR, ROOT

ZOO = BAD_SPECS_DIR / "zoo.yaml"
runner = CliRunner()

HUGE = """
    name: huge
    input: [100000]
    layers:
      - {name: fc, type: linear, out_features: 100000}
"""
# about 200,000 parameters: every weights format is larger than 200 kB
MIDDLE = """
    name: middle
    input: [3, 16, 16]
    layers:
      - {name: conv, type: conv2d, out_channels: 8, kernel_size: 3, padding: 1, activation: relu}
      - {type: flatten}
      - {name: fc, type: linear, out_features: 96}
"""


def netspec_limited(args, cwd, *, address_space: int | None = None, file_size: int | None = None, timeout=300):
    """`python -m netspec ARGS` in a subprocess under resource limits."""

    def limit():
        if address_space is not None:
            resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
        if file_size is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size, file_size))

    return subprocess.run([sys.executable, "-m", "netspec", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, preexec_fn=limit, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "backends")])})


# --- a source export builds no model; the others check the memory first ----------------------------------------


@pytest.mark.parametrize("backend", ["torch", "keras"])
def test_source_export_of_a_huge_model_builds_no_model(write_spec, tmp_path, backend):
    """10 billion parameters (40 GB as float32) pass `check`; writing their source takes a few
    kilobytes, so it runs within a 6 GiB address space (torch alone maps about 4)."""
    pytest.importorskip(backend)
    spec = write_spec(HUGE)
    result = netspec_limited(["export", spec, "-b", backend, "-o", tmp_path / "out"], tmp_path,
                             address_space=6 << 30)
    assert result.returncode == 0, result.stderr[-2000:]
    written = tmp_path / "out" / f"huge_{backend}.py"
    assert result.stdout == f"wrote {written} (source)\n"
    assert written.is_file() and "100000" in written.read_text()


@pytest.mark.torch
@pytest.mark.parametrize(("backend", "fmt"), [("torch", "safetensors"), ("torch", "onnx"), ("keras", "weights")])
def test_weights_export_of_a_model_too_large_for_memory_is_refused(write_spec, tmp_path, backend, fmt):
    pytest.importorskip(backend)
    spec = write_spec(HUGE)
    result = netspec_limited(["export", spec, "-b", backend, "-o", tmp_path / "out", "-f", "source", "-f", fmt],
                             tmp_path, address_space=6 << 30)
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"error: the {fmt} export needs about " in result.stderr
    assert "of memory for the 10,000,100,000 parameters of 'huge'" in result.stderr
    assert "hint: export -f source" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


# --- what is at an output path ----------------------------------------------------------------------------------


def _make(kind: str, path: Path) -> None:
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    elif kind == "dangling link":
        path.symlink_to(path.parent / "nowhere")
    elif kind == "file":
        path.write_text("mine")


@pytest.mark.parametrize("force", [False, True])
@pytest.mark.parametrize("kind", ["fifo", "folder", "dangling link"])
@pytest.mark.parametrize("command", ["schema", "draw", "export", "report"])
def test_an_output_path_that_is_not_a_file_is_never_replaced(tmp_path, command, kind, force):
    names = {"schema": "schema.json", "draw": "zoo.svg", "export": "zoo_torch.py", "report": "report.html"}
    target = tmp_path / names[command]
    _make(kind, target)
    args = {"schema": ["schema", "-o", target], "draw": ["draw", ZOO, "-o", target],
            "export": ["export", ZOO, "-o", tmp_path], "report": ["report", tmp_path / "run", "-o", target]}[command]
    result = runner.invoke(app, [*map(str, args), *(["--force"] if force else [])])
    if kind == "dangling link" and force:  # the link itself is replaced, never what it points to
        if command != "report":  # (the report has no run to report on)
            assert result.exit_code == 0, result.output
            assert target.is_file() and not target.is_symlink() and not (tmp_path / "nowhere").exists()
        return
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    expected = {"fifo": "it is a fifo, not a file", "folder": "it is a folder, not a file",
                "dangling link": "it is a symbolic link to"}[kind]
    assert expected in result.output
    assert {"fifo": target.is_fifo, "folder": target.is_dir, "dangling link": target.is_symlink}[kind]()
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]  # nothing else written


@pytest.mark.parametrize("command", [["schema", "-o"], ["report", ".", "-o"]])
def test_a_device_is_never_replaced_even_with_force(command):
    result = runner.invoke(app, [*command, "/dev/null", "--force"])
    assert result.exit_code == 2, result.output
    assert "refusing to write /dev/null: it is a device, not a file" in result.output
    assert Path("/dev/null").is_char_device()


def test_export_into_a_path_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "out").write_text("mine")
    result = runner.invoke(app, ["export", str(ZOO), "-o", str(tmp_path / "out" / "sub")])
    assert result.exit_code == 2 and "it is a file, not a folder" in result.output
    assert (tmp_path / "out").read_text() == "mine"


def test_schema_overwrites_only_with_force(tmp_path):
    target = tmp_path / "schema.json"
    target.write_text("mine")
    refused = runner.invoke(app, ["schema", "-o", str(target)])
    assert refused.exit_code == 2 and f"refusing to overwrite {target}" in refused.output
    assert target.read_text() == "mine"
    forced = runner.invoke(app, ["schema", "-o", str(target), "--force"])
    assert forced.exit_code == 0 and target.read_text().startswith("{")
    assert forced.stdout == f"wrote {target}\n"


def test_bench_refuses_an_existing_output_before_measuring(tmp_path):
    target = tmp_path / "bench.json"
    target.write_text("mine")
    result = runner.invoke(app, ["bench", str(ZOO), "-o", str(target), "--backend", "nosuch"])
    # the output is checked first: before the backend is looked up, let alone anything measured
    assert result.exit_code == 2 and f"refusing to overwrite {target}" in result.output
    assert target.read_text() == "mine"


def test_a_dangling_link_is_an_existing_output(tmp_path):
    link = tmp_path / "zoo_torch.py"
    link.symlink_to(tmp_path / "elsewhere.py")
    result = runner.invoke(app, ["export", str(ZOO), "-o", str(tmp_path)])
    assert result.exit_code == 2 and f"refusing to overwrite {link}: it is a symbolic link to" in result.output
    assert link.is_symlink() and not (tmp_path / "elsewhere.py").exists()


# --- all or nothing ---------------------------------------------------------------------------------------------


@pytest.mark.torch
def test_a_multi_format_export_that_fails_on_a_later_format_writes_nothing(tmp_path, monkeypatch):
    from netspec.errors import SpecError
    from netspec_torch import export

    def broken(*_):
        raise SpecError.single("ONNX export needs the onnx extra")

    monkeypatch.setitem(export.WRITERS, "onnx", broken)
    out = tmp_path / "out"
    result = runner.invoke(app, ["export", str(ZOO), "-o", str(out), "-f", "source", "-f", "safetensors",
                                 "-f", "onnx"])
    assert result.exit_code == 2 and "ONNX export needs the onnx extra" in result.output
    assert not out.exists()  # the folder it created is gone too
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = runner.invoke(app, ["export", str(ZOO), "-o", str(out), "-f", "source", "-f", "onnx"])
    assert result.exit_code == 2
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


@pytest.mark.slow
@pytest.mark.parametrize(("backend", "fmt"), [("torch", "safetensors"), ("torch", "pt2"), ("torch", "onnx"),
                                               ("keras", "weights"), ("keras", "keras"), ("keras", "savedmodel")])
def test_a_file_size_limit_is_a_clean_error_and_writes_nothing(write_spec, tmp_path, backend, fmt):
    """`ulimit -f`: the writer (torch's zip writer, ONNX, h5py, safetensors) fails its own way
    with EFBIG; the user sees one message naming the file."""
    pytest.importorskip(backend)
    if fmt == "onnx":
        pytest.importorskip("onnxscript")
    spec = write_spec(MIDDLE)
    out = tmp_path / "out"
    result = netspec_limited(["export", spec, "-b", backend, "-o", out, "-f", "source", "-f", fmt], tmp_path,
                             file_size=200_000)
    suffix = {"safetensors": ".safetensors", "pt2": ".pt2", "onnx": ".onnx", "weights": ".weights.h5",
              "keras": ".keras", "savedmodel": ".savedmodel"}[fmt]
    assert result.returncode == 2, result.stderr[-3000:]
    assert f"error: cannot write {out / ('middle' + suffix)}: File too large" in result.stderr, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert not out.exists()


# --- convert ----------------------------------------------------------------------------------------------------


@pytest.mark.keras
def test_convert_names_its_output_after_the_weights(tmp_path):
    pytest.importorskip("keras")
    exported = runner.invoke(app, ["export", str(ZOO), "-o", str(tmp_path), "-f", "safetensors"])
    assert exported.exit_code == 0, exported.output
    assert exported.stdout == f"wrote {tmp_path / 'zoo.safetensors'} (safetensors)\n"
    to_keras = runner.invoke(app, ["convert", str(ZOO), "--weights", str(tmp_path / "zoo.safetensors"),
                                   "--to", "keras", "-o", str(tmp_path / "conv")])
    assert to_keras.exit_code == 0, to_keras.output
    assert to_keras.stdout == f"wrote {tmp_path / 'conv' / 'zoo.weights.h5'} (weights)\n"
    back = runner.invoke(app, ["convert", str(ZOO), "--weights", str(tmp_path / "conv" / "zoo.weights.h5"),
                               "--to", "torch", "-o", str(tmp_path)])
    assert back.exit_code == 2 and f"refusing to overwrite {tmp_path / 'zoo.safetensors'}" in back.output


@pytest.mark.parametrize(("name", "to", "message", "hint"), [
    ("trained.pth", "torch", "already holds PyTorch weights", "use --to keras"),
    ("trained.safetensors", "torch", "already holds PyTorch weights", "use --to keras"),
    ("trained.weights.h5", "keras", "already holds Keras weights", "use --to torch"),
    ("trained.keras", "keras", "already holds Keras weights", "use --to torch"),
    ("trained.h5", "keras", "is not a weights file netspec reads (.safetensors, .pt, .pth, .bin, .ckpt, "
     ".weights.h5, .keras)", None),
])
def test_convert_knows_each_backend_s_weights_by_its_ending(tmp_path, name, to, message, hint):
    """convert asks each backend which files it reads (Backend.weights_read), before any framework
    is imported; a refusal writes nothing."""
    (tmp_path / name).write_bytes(b"not read")
    result = runner.invoke(app, ["convert", str(ZOO), "--weights", str(tmp_path / name), "--to", to,
                                 "-o", str(tmp_path / "out")])
    assert result.exit_code == 2 and message in result.output, result.output
    assert hint is None or f"hint: {hint}" in result.output
    assert not (tmp_path / "out").exists()


def test_outputs_module_keeps_what_is_there_when_a_writer_fails(tmp_path):
    from netspec.files.outputs import Outputs

    (tmp_path / "a.txt").write_text("old a")
    with pytest.raises(ZeroDivisionError), Outputs(force=True) as out:
        Path(out.file(tmp_path / "a.txt")).write_text("new a")
        Path(out.file(tmp_path / "b.txt")).write_text("new b")
        1 / 0  # noqa: B018  (a writer's bug)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]
    assert (tmp_path / "a.txt").read_text() == "old a"


def test_report_never_reads_through_a_link_out_of_the_run_folder(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    secret = tmp_path / "secret.txt"
    secret.write_text("password")
    (run / "curves.png").symlink_to(secret)
    result = runner.invoke(app, ["report", str(run), "-o", str(tmp_path / "r.html")])
    assert result.exit_code == 2
    assert f"refusing to read {run / 'curves.png'}: it is a symbolic link out of the run folder" in result.output
    assert not (tmp_path / "r.html").exists()


def test_running_out_of_memory_while_writing_is_a_clean_error(tmp_path):
    from netspec.files.outputs import Outputs

    with pytest.raises(OutputError) as caught, Outputs() as out:
        out.file(tmp_path / "big.onnx")
        raise MemoryError
    assert caught.value.problems[0].message == f"cannot write {tmp_path / 'big.onnx'}: out of memory while writing it"
    assert list(tmp_path.iterdir()) == []


def test_weights_with_a_source_only_export_are_refused(tmp_path):
    (tmp_path / "w.safetensors").write_bytes(b"")
    result = runner.invoke(app, ["export", str(ZOO), "-o", str(tmp_path / "out"), "--weights",
                                 str(tmp_path / "w.safetensors")])
    assert result.exit_code == 2 and "--weights has no effect on a source export" in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.keras
def test_a_savedmodel_replaces_only_a_savedmodel(tmp_path):
    pytest.importorskip("keras")
    args = ["export", str(ZOO), "-b", "keras", "-o", str(tmp_path), "-f", "savedmodel"]
    folder = tmp_path / "zoo.savedmodel"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    refused = runner.invoke(app, [*args, "--force"])
    assert refused.exit_code == 2 and "it is not a SavedModel netspec wrote" in refused.output
    assert (folder / "notes.txt").read_text() == "mine"
    (folder / "notes.txt").unlink()
    folder.rmdir()
    assert runner.invoke(app, args).exit_code == 0
    first = (folder / "saved_model.pb").stat().st_mtime_ns
    assert runner.invoke(app, args).exit_code == 2  # exists: --force needed
    replaced = runner.invoke(app, [*args, "--force"])
    assert replaced.exit_code == 0, replaced.output
    assert (folder / "saved_model.pb").stat().st_mtime_ns != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["zoo.savedmodel"]


def test_each_kind_of_user_error_is_its_own_class_and_the_cli_exits_2_for_all(tmp_path, write_spec):
    """A program using netspec catches the kind it handles; none but the spec's mistakes is a
    SpecError, and every kind is a UserError, which the CLI reports with exit code 2."""
    from netspec import check_file
    from netspec.codegen.backend import get_backend
    from netspec.errors import (
        DataError,
        OutputError,
        RunError,
        SetupError,
        SpecError,
        UsageError,
        UserError,
        WeightsError,
    )
    from netspec.files.conversion import convert
    from netspec.files.outputs import check_target
    from netspec.files.state_files import read_state_dict
    from netspec.train.cifar import load_cifar10
    from netspec.train.rundir import RunDir

    (tmp_path / "taken.py").write_text("mine")
    (tmp_path / "w.h5").write_bytes(b"")
    net = check_file(ZOO)
    kinds = {
        SpecError: lambda: check_file(write_spec("name: s\ninput: [3]\nlayers: [{name: a, type: nope}]\n")),
        UsageError: lambda: convert(net, tmp_path / "w.h5", "keras", tmp_path / "out"),
        WeightsError: lambda: read_state_dict(tmp_path / "missing.safetensors"),
        DataError: lambda: load_cifar10(tmp_path / "no-cifar"),
        OutputError: lambda: check_target(tmp_path / "taken.py", force=False),
        RunError: lambda: RunDir.read_info(tmp_path / "no-run"),
        SetupError: lambda: get_backend("caffe"),
    }
    for kind, fail in kinds.items():
        with pytest.raises(UserError) as caught:
            fail()
        assert type(caught.value) is kind, (kind, type(caught.value))
        assert isinstance(caught.value, SpecError) == (kind is SpecError)
    result = runner.invoke(app, ["export", str(ZOO), "-o", str(tmp_path), "-f", "source"])
    assert result.exit_code == 0
    again = runner.invoke(app, ["export", str(ZOO), "-o", str(tmp_path), "-f", "source"])
    assert again.exit_code == 2 and "refusing to overwrite" in again.output  # an OutputError, told as any other
