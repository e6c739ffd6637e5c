"""The command line, through typer's CliRunner and as a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml
from typer.testing import CliRunner

from netspec import __version__
from netspec.cli import app

from .conftest import ALL_SPECS, BAD_SPECS_DIR, ROOT, SPECS_DIR, without

runner = CliRunner()


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "netspec", *map(str, args)], capture_output=True, text=True)


def test_check_prints_the_layer_table_and_totals():
    result = runner.invoke(app, ["check", str(SPECS_DIR / "alexnet.yaml")], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    out = result.output
    for text in ("conv1", "conv2d+relu", "96×55×55", "256×6×6", "lrn", "Total params", "60,965,224",
                 "Trainable params", "MACs per image", "Activations, forward + backward", "Params size",
                 "Estimated total (float32)"):
        assert text in out


def test_check_shows_channels_last_specs_as_written():
    result = runner.invoke(app, ["check", str(SPECS_DIR / "alexnet-keras.yaml")], env={"COLUMNS": "120"})
    assert result.exit_code == 0
    assert "56×56×96" in result.output and "input 224×224×3" in result.output


@pytest.mark.parametrize("spec", ALL_SPECS, ids=lambda p: p.name)
def test_check_json_is_stable_and_complete(spec):
    result = runner.invoke(app, ["check", str(spec), "--json"])
    assert result.exit_code == 0
    doc = json.loads(result.output)
    assert doc["ok"] is True and doc["format"] == 1
    assert doc["spec"]["file"] == str(spec)
    for layer in doc["layers"]:
        assert {"name", "type", "output_shape", "params", "macs"} <= set(layer)
    totals = doc["totals"]
    assert totals["params"] == sum(layer["params"] + layer["non_trainable_params"] for layer in doc["layers"])
    assert totals["macs"] == sum(layer["macs"] for layer in doc["layers"])
    memory = totals["memory_bytes"]
    assert memory["total"] == memory["input"] + memory["activations_forward_backward"] + memory["params"]


def test_check_options_input_batch_and_set():
    result = runner.invoke(app, ["check", str(SPECS_DIR / "alexnet-torchvision.yaml"), "--json",
                                 "--input", "3x256x256", "--batch", "8", "--set", "num_classes=10"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["input_shape"] == [3, 256, 256] and doc["batch"] == 8
    assert doc["layers"][-1]["output_shape"] == [10]
    assert doc["totals"]["memory_bytes"]["input"] == 8 * 3 * 256 * 256 * 4


@pytest.mark.parametrize("bad", ["3x224", "abc", "0x4x4", "3x-1x2", "224"])
def test_bad_input_option_is_a_user_error(bad):
    result = runner.invoke(app, ["check", str(SPECS_DIR / "alexnet.yaml"), "--input", bad])
    assert result.exit_code == 2
    assert "--input" in result.output


def test_cifar10_at_224_fails_with_the_explanation_as_a_subprocess():
    result = run_cli("check", SPECS_DIR / "alexnet-cifar10.yaml", "--input", "3x224x224")
    assert result.returncode == 2
    assert result.stdout == ""
    assert "error: layer 'fc6': in_features is 9,216" in result.stderr
    assert "flattening 256×5×5" in result.stderr and "--input 3x227x227" in result.stderr
    assert "Traceback" not in result.stderr


def test_check_never_imports_a_framework():
    code = (
        "import sys\n"
        "from netspec.cli import app\n"
        "try:\n"
        f"    app(['check', {str(SPECS_DIR / 'alexnet.yaml')!r}])\n"
        "except SystemExit as exit:\n"
        "    assert exit.code in (0, None), exit.code\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'tensorflow', 'keras', 'jax'))\n"
        "print('HEAVY', heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout


def test_missing_spec_file_is_a_user_error():
    result = run_cli("check", "no/such/spec.yaml")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: file not found: no/such/spec.yaml",
        "    hint: check the path; specs live in specs/ by convention",
    ]


def test_unknown_option_is_a_usage_error():
    result = run_cli("check", SPECS_DIR / "alexnet.yaml", "--frobnicate")
    assert result.returncode == 2


def test_version_and_help():
    assert run_cli("--version").stdout.strip() == f"netspec {__version__}"
    help_text = run_cli("--help").stdout
    assert "check" in help_text and "schema" in help_text


def test_schema_validates_every_spec_and_rejects_a_bad_one(tmp_path):
    import jsonschema

    out = tmp_path / "schema.json"
    result = runner.invoke(app, ["schema", "-o", str(out)])
    assert result.exit_code == 0
    schema = json.loads(out.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    valid_test_specs = ("zoo.yaml", "graph.yaml", "sequence.yaml", "sequence_blocks.yaml", "tokens.yaml",
                        "volume.yaml")
    every_spec = sorted((ROOT / "specs").glob("**/*.yaml")) + [BAD_SPECS_DIR / name for name in valid_test_specs]
    assert len(every_spec) >= len(ALL_SPECS) + 17  # the zoo's modules, repeats, when and ${a * b} included
    for spec in every_spec:
        doc = yaml.safe_load(spec.read_text())  # as an editor sees it: ${params} unresolved
        errors = list(validator.iter_errors(doc))
        assert not errors, (spec.name, errors[0].message)
    # the bad specs whose mistake is in one value or key; the others relate fields, files or shapes
    # (duplicate names, extends, graph edges, sizes that do not fit), which only `netspec check` can tell
    for name in ("unknown_key", "unknown_type", "nonpositive_size", "identifier_name", "training_values",
                 "many_errors", "huge_integer"):
        assert list(validator.iter_errors(yaml.safe_load((BAD_SPECS_DIR / f"bad_{name}.yaml").read_text()))), name
    module = {"layers": [{"name": "c", "type": "conv2d", "out_channels": "${w * 2}", "kernel_size": 3}]}
    good = {"name": "m", "input": [3, 8, 8], "modules": {"blk": {"params": {"w": None}, **module}},
            "layers": [{"name": "a", "module": "blk", "repeat": 2, "params": {"w": 4}, "when": "${w > 1}"}]}
    assert not list(validator.iter_errors(good))
    # a variant's module definitions merge into its base's, so they may leave out the layers; a base's may not
    partial = {"modules": {"blk": {"params": {"w": 8}}}}
    assert not list(validator.iter_errors({"extends": "m.yaml", **partial}))
    assert list(validator.iter_errors({**good, **partial}))
    joined = {"inputs": ["deep", "skip"], "layers": [{"name": "j", "type": "concat", "inputs": ["deep", "skip"]}]}
    assert not list(validator.iter_errors({**good, "modules": {**good["modules"], "join": joined}}))
    for key, value in (("repeats", 2), ("repeat", 0), ("when", "yes")):
        use = {**good["layers"][0], key: value}
        assert list(validator.iter_errors({**good, "layers": [use]})), key
    assert list(validator.iter_errors({**good, "modules": {"blk": {"params": {}}}}))  # a module without layers
    bad = {"name": "x", "input": [3, 8, 8], "layers": [{"name": "c", "type": "conv2d", "filters": 3}]}
    assert list(validator.iter_errors(bad))
    bad_ref = {"name": "x", "input": [3, 8, 8], "layers": [{"name": "d", "type": "dropout", "p": "half"}]}
    assert list(validator.iter_errors(bad_ref))


@pytest.mark.parametrize("args", [[], ["-o", "-"]], ids=["default", "dash"])
def test_schema_to_stdout_is_json(args, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["schema", *args])
    assert result.exit_code == 0
    assert json.loads(result.output)["title"] == "netspec network spec"
    assert list(tmp_path.iterdir()) == []  # '-' is stdout, not a file named '-'


WITHOUT_TORCH_SCRIPT = without(("torch", "torchvision"), """
from netspec.cli import main
sys.argv = ["netspec", *sys.argv[1:]]
main()
""")


@pytest.mark.parametrize(("args", "code"), [
    (["export", "resnet50", "-b", "torch", "-f", "source"], 0),
    (["export", "resnet50", "-b", "torch", "-f", "safetensors"], 2),
    (["train", "alexnet-digits", "-b", "torch", "--max-steps", "1"], 2),
], ids=["source", "weights", "train"])
def test_torch_source_needs_no_torch_and_building_says_what_it_needs(tmp_path, args, code):
    """Generated source is text: it is written for a machine that has torch, from one that may
    not. Building, training and weight files need torch, and say so (exit 2, nothing written)."""
    result = subprocess.run([sys.executable, "-c", WITHOUT_TORCH_SCRIPT, *args, *(
        ["-o", str(tmp_path / "out")] if args[0] == "export" else ["--run-dir", str(tmp_path / "run")])],
        capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == code, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    if code == 0:
        assert "class ResNet(nn.Module)" in (tmp_path / "out" / "resnet50_torch.py").read_text()
    else:
        assert "needs PyTorch: the torch backend needs 'torch', which is not installed" in result.stderr
        assert 'pip install -e ".[torch]" (source export works without it)' in result.stderr
        assert list(tmp_path.iterdir()) == []


def test_layers_inherited_from_a_base_spec_name_its_file():
    result = runner.invoke(app, ["check", str(SPECS_DIR / "alexnet-onetower.yaml")], env={"COLUMNS": "120"})
    assert result.exit_code == 0
    conv1 = next(line for line in result.output.splitlines() if line.strip().startswith("conv1"))
    assert conv1.rstrip().endswith(" 14")
    assert f"Ln: lines in {SPECS_DIR / 'alexnet.yaml'}" in result.output


def test_results_are_not_wrapped_when_piped():
    """Into a pipe or a file, a table row is one line however long: rich used to wrap at 80
    columns, mid-word ('alexnet-torchvisi' / 'on')."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    result = subprocess.run([sys.executable, "-m", "netspec", "diff", str(SPECS_DIR / "alexnet.yaml"),
                             str(SPECS_DIR / "alexnet-torchvision.yaml")], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    header = next(line for line in result.stdout.splitlines() if "layer" in line and "trainable Δ" in line)
    assert "alexnet-torchvision" in header
    assert "alexnet-torchvisi\n" not in result.stdout and not any(
        line.strip("┃│ ").startswith("on ") for line in result.stdout.splitlines())


@pytest.mark.keras
def test_keras_commands_say_what_they_wrote_on_stdout_without_tensorflow_noise(tmp_path):
    pytest.importorskip("keras")
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "netspec", "export", str(ROOT / "tests" / "specs" / "zoo.yaml"),
                             "-b", "keras", "-o", str(out), "-f", "source", "-f", "weights"],
                            capture_output=True, text=True, env={k: v for k, v in os.environ.items()
                                                                 if k != "TF_CPP_MIN_LOG_LEVEL"})
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"wrote {out / 'zoo_keras.py'} (source)\nwrote {out / 'zoo.weights.h5'} (weights)\n"
    for noise in ("absl::InitializeLog", "oneDNN", "cpu_feature_guard", "TF_ENABLE_ONEDNN_OPTS"):
        assert noise not in result.stderr, result.stderr


@pytest.mark.parametrize("command", ["export", "convert", "train", "bench", "draw", "report", "schema"])
def test_help_shows_no_type_after_flags(command):
    result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "<bool>" not in result.output
    if command == "export":  # every backend's formats, Keras weights included
        flat = " ".join(result.output.split())
        for fmt in ("safetensors, pt2, onnx", "keras, weights (.weights.h5), savedmodel"):
            assert fmt in flat.replace("│ ", "")


def test_an_internal_error_prints_its_text_escaped(monkeypatch, capsys):
    """The last-resort message quotes the exception, whose text may hold a file name or data from
    the user: an ESC or BEL there would clear the screen or retitle the window."""
    import netspec.cli

    def failing_app():
        raise RuntimeError("bad file \x1b[2J\x1b]0;owned\x07.safetensors")

    monkeypatch.setattr(netspec.cli, "app", failing_app)
    monkeypatch.delenv("NETSPEC_DEBUG", raising=False)
    with pytest.raises(SystemExit) as stopped:
        netspec.cli.main()
    assert stopped.value.code == 1
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\x07" not in err
    assert "bad file \\x1b[2J\\x1b]0;owned\\x07.safetensors" in err


@pytest.mark.parametrize("args", [["check", "resnet50"], ["list"], ["schema"]], ids=["check", "list", "schema"])
def test_a_read_only_command_cut_short_by_a_closed_pipe_exits_0_quietly(args):
    """`netspec check X | head -1` exited 1: the reader had all it wanted, as with cat or grep."""
    reader = subprocess.Popen(["true"], stdin=subprocess.PIPE)
    reader.wait(timeout=30)  # the reader is gone before the first byte: every write meets a closed pipe
    writer = subprocess.run([sys.executable, "-m", "netspec", *args], stdout=reader.stdin, stderr=subprocess.PIPE,
                            text=True, timeout=120)
    reader.stdin.close()
    assert writer.returncode == 0, writer.stderr
    assert writer.stderr == ""
    broken = subprocess.run(f"{sys.executable} -m netspec check no-such-spec | head -1", shell=True,
                            capture_output=True, text=True, timeout=120)
    assert "no spec file or packaged spec named" in broken.stderr  # a real error still says so


def test_train_usage_names_its_spec_argument_in_capitals():
    """The usage line showed `[spec]`, unlike every other command's SPEC."""
    result = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "100"})
    assert "netspec train [OPTIONS] [SPEC]" in result.output


@pytest.mark.parametrize("columns", [70, 100])
def test_help_fits_the_terminal_and_never_cuts_an_option_short(columns):
    """At 70 columns rich's panels cut train's options short (--channels-la…, runs/NAME-TIM…)."""
    import typer.main

    env = {**os.environ, "COLUMNS": str(columns)}
    env.pop("NETSPEC_DEBUG", None)
    for name, command in typer.main.get_command(app).commands.items():
        result = subprocess.run([sys.executable, "-m", "netspec", name, "--help"], capture_output=True, text=True,
                                env=env, timeout=120)
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert max(map(len, lines)) <= columns and "…" not in result.stdout, (name, result.stdout)
        flat = " ".join(result.stdout.split())
        for param in command.params:
            if param.param_type_name == "option":
                assert all(opt in flat for opt in param.opts + param.secondary_opts), (name, param.opts)


@pytest.mark.parametrize("command", ["diff", "bench"])
def test_results_into_a_pipe_are_unwrapped_unless_columns_is_set(monkeypatch, capsys, command):
    """Piped diff and bench ignored COLUMNS (92 and 147 columns at COLUMNS=70); without it they
    stay unwrapped, so grep finds whole names."""
    from netspec.cli import _results_console

    if command == "diff":
        from netspec.analysis.checker import check_file
        from netspec.views.diff import diff_nets, table

        result = diff_nets(check_file(SPECS_DIR / "alexnet.yaml"), check_file(SPECS_DIR / "alexnet-torchvision.yaml"))
        parts = [table(result), result.explanation()]
    else:
        from netspec.train.bench import table

        parts = [table(json.loads((ROOT / "benchmarks" / "results" / "bench_alexnet_digits_cpu.json").read_text()))]

    def widest(columns: str | None) -> int:
        if columns is None:
            monkeypatch.delenv("COLUMNS", raising=False)
        else:
            monkeypatch.setenv("COLUMNS", columns)
        console = _results_console()
        for part in parts:
            console.print(part)
        return max(len(line) for line in capsys.readouterr().out.splitlines())

    assert widest("70") <= 70
    assert widest(None) > 70


@pytest.mark.torch  # train asks for its backend first
def test_train_refuses_a_sequence_network_at_its_input_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = BAD_SPECS_DIR / "sequence.yaml"
    assert runner.invoke(app, ["check", str(spec)]).exit_code == 0  # a valid network ...
    result = runner.invoke(app, ["train", str(spec), "--epochs", "1"])
    assert result.exit_code == 2  # ... that train's image datasets cannot feed
    assert "sequence.yaml:6:1: error: netspec train's datasets are images (channels × height × width) or text" \
        in result.output
    assert "takes a sequence, 8×96" in result.output and "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("backend", ["torch", "keras"])
def test_export_to_dash_writes_the_source_to_stdout_and_nothing_else(tmp_path, monkeypatch, backend):
    monkeypatch.chdir(tmp_path)
    spec = SPECS_DIR / "alexnet.yaml"
    written = runner.invoke(app, ["export", str(spec), "-b", backend, "-o", str(tmp_path / "out")])
    assert written.exit_code == 0, written.output
    streamed = runner.invoke(app, ["export", str(spec), "-b", backend, "-o", "-"])
    assert streamed.exit_code == 0, streamed.output
    assert streamed.stdout == (tmp_path / "out" / f"alexnet_{backend}.py").read_text()
    other = runner.invoke(app, ["export", str(SPECS_DIR / "alexnet-digits.yaml"), "-b", backend, "-o", "-"])
    assert other.stdout != streamed.stdout  # the spec's own source
    refused = runner.invoke(app, ["export", str(spec), "-b", backend, "-o", "-", "-f", "source", "-f",
                                  "safetensors" if backend == "torch" else "keras"])
    assert refused.exit_code == 2 and "-o - writes the source to stdout" in refused.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no folder named '-'


def test_export_takes_another_input_size_as_check_does():
    spec = ROOT / "specs" / "zoo" / "resnet18.yaml"
    small = runner.invoke(app, ["export", str(spec), "-b", "keras", "-o", "-", "--input", "3x64x64"])
    assert small.exit_code == 0, small.output
    assert "keras.Input(shape=(64, 64, 3)" in small.stdout
    default = runner.invoke(app, ["export", str(spec), "-b", "keras", "-o", "-"])
    assert "keras.Input(shape=(224, 224, 3)" in default.stdout
    wrong = runner.invoke(app, ["export", str(spec), "-o", "-", "--input", "3x64"])
    assert wrong.exit_code == 2 and "--input 3x64 is a sequence" in wrong.output
