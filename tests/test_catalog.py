"""Packaged specs by name (netspec.language.catalog), the Python API's wording, and the wheel as a user gets it."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from typer.testing import CliRunner

import netspec
from netspec.cli import app
from netspec.errors import SpecError
from netspec.language.catalog import SPECS_ROOT, list_models, packaged_specs, spec_path

from .conftest import ALL_SPECS, EXAMPLE_SPECS, ROOT, SPECS_DIR, ZOO_SPECS

runner = CliRunner()


def test_every_spec_of_the_project_is_packaged_by_its_file_name():
    assert sorted(packaged_specs()) == sorted(path.stem for path in [*ALL_SPECS, *ZOO_SPECS, *EXAMPLE_SPECS])
    assert packaged_specs()["resnet50"].read_bytes() == (SPECS_DIR / "zoo" / "resnet50.yaml").read_bytes()


def test_list_models_filters_with_a_shell_pattern():
    assert list_models("resnet*") == ["resnet101", "resnet152", "resnet18", "resnet34", "resnet50"]
    assert list_models("alexnet-d*") == ["alexnet-digits"]
    assert list_models("nothing*") == []
    assert netspec.list_models() == list_models()


def test_a_command_takes_a_packaged_spec_by_name_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["check", "resnet18", "--set", "num_classes=10", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["spec"]["name"] == "resnet18" and doc["totals"]["trainable_params"] == 11_181_642


def test_a_file_of_the_user_wins_over_a_packaged_spec_of_the_same_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    mine = tmp_path / "resnet18"
    mine.write_text("name: mine\ninput: [4]\nlayers:\n  - {type: linear, out_features: 2}\n")
    assert spec_path("resnet18") == Path("resnet18")
    assert netspec.check("resnet18").spec.name == "mine"
    assert spec_path("zoo/resnet18.yaml") == Path("zoo/resnet18.yaml")  # a path stays a path, found or not


def test_an_unknown_name_is_one_user_error_with_the_closest_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["check", "resnet5"])
    assert result.exit_code == 2
    assert "no spec file or packaged spec named 'resnet5'" in result.output
    assert "did you mean 'resnet50'?" in result.output and "Traceback" not in result.output


def test_netspec_list_prints_each_name_with_its_file():
    result = runner.invoke(app, ["list", "vgg*"])
    assert result.exit_code == 0
    assert result.output.split("\n")[:3] == ["vgg11     zoo/vgg11.yaml", "vgg16     zoo/vgg16.yaml",
                                             "vgg16_bn  zoo/vgg16_bn.yaml"]
    assert runner.invoke(app, ["list", "nothing*"]).exit_code == 2


def test_python_overrides_are_typed_values_and_their_errors_name_the_argument():
    assert netspec.check("resnet18", overrides={"num_classes": 10}).layers[-1].output_shape == (10,)
    with pytest.raises(SpecError) as caught:
        netspec.check("resnet18", overrides={"num_clases": 10})
    text = str(caught.value)
    assert "overrides['num_clases']: error: no param named 'num_clases'" in text
    assert "did you mean 'num_classes'?" in text and "--set" not in text
    with pytest.raises(SpecError, match=r"overrides\['training.epochs'\]: error: the value holds a number that is "
                                        "not finite"):
        netspec.check("resnet18", overrides={"training.epochs": float("nan")})
    with pytest.raises(SpecError, match=r"the value cannot be written in a spec \(TypeError"):
        netspec.check("resnet18", overrides={"num_classes": object()})
    with pytest.raises(SpecError) as caught:
        netspec.check("resnet18", overrides=["num_classes"])
    assert "overrides needs KEY=VALUE" in str(caught.value) and "--set" not in str(caught.value)


def test_the_command_line_still_names_its_flag(tmp_path, monkeypatch):
    result = runner.invoke(app, ["check", "resnet18", "--set", "num_classes"])
    assert result.exit_code == 2
    assert "--set num_classes: error: --set needs KEY=VALUE" in result.output


@pytest.mark.torch
def test_create_model_builds_a_packaged_spec_with_keyword_params():
    model = netspec.create_model("resnet18", num_classes=7)
    assert type(model).__name__ == "ResNet"  # the spec's class_name, torchvision's
    assert model.fc.out_features == 7


# --- the wheel, installed in a fresh environment outside the checkout ------------------------------

def _build_backend_problem() -> str | None:
    """Why this environment's setuptools cannot build netspec's wheel, or None."""
    try:
        version = importlib.metadata.version("setuptools")
    except importlib.metadata.PackageNotFoundError:
        return "setuptools is not installed"
    release = tuple(int(part) for part in version.split(".")[:2] if part.isdigit())
    if release < (68, 0):
        return f"setuptools {version} is older than the 68 that pyproject.toml asks for"
    if release < (70, 1) and importlib.util.find_spec("wheel") is None:
        return f"setuptools {version} builds wheels only with the 'wheel' package"
    return None


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory):
    """netspec's wheel, built from a copy of the source and installed with --no-deps into a new
    venv; the dependencies come from this environment's site-packages through a path file, which
    adds the folder without running its .pth files (so the editable checkout is not on the path)."""
    problem = _build_backend_problem()
    if problem:  # the wheel is built without isolation, by this environment's setuptools
        pytest.skip(f"cannot build the wheel here: {problem} (pip install -e '.[dev]' brings what it needs)")
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    shutil.copytree(ROOT, source, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", ".ci-venv", "runs", "out", "build", "*.egg-info", "__pycache__", ".pytest_cache"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-cache-dir"]
    subprocess.run([*pip, "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(work / "dist"), str(source)],
                   check=True, capture_output=True, timeout=300)
    [wheel] = (work / "dist").glob("netspec-*.whl")
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    subprocess.run([*pip, "install", "-q", "--no-deps", "--target", str(site), str(wheel)], check=True,
                   capture_output=True, timeout=300)
    (site / "zz_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    shutil.rmtree(source)  # nothing of the checkout's copy is left to be found
    return venv, wheel


def _run_installed(venv: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run([str(venv / "bin" / "python"), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.slow
def test_the_wheel_holds_every_spec(installed_wheel):
    import zipfile

    _, wheel = installed_wheel
    names = zipfile.ZipFile(wheel).namelist()
    packaged = sorted(Path(name).stem for name in names if name.startswith("netspec/specs/") and name.endswith(".yaml"))
    assert packaged == sorted(packaged_specs())
    assert packaged_specs()["resnet50"].relative_to(SPECS_ROOT).as_posix() == "zoo/resnet50.yaml"


@pytest.mark.slow
def test_the_installed_wheel_checks_and_lists_specs_by_name(installed_wheel, tmp_path):
    venv, _ = installed_wheel
    where = _run_installed(venv, "-c", "import netspec; print(netspec.__file__)", cwd=tmp_path)
    assert str(venv) in where.stdout, where  # the wheel's copy, not the checkout
    checked = _run_installed(venv, "-m", "netspec", "check", "resnet50", cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert "25,557,032" in checked.stdout and str(ROOT) not in checked.stdout
    listed = _run_installed(venv, "-c", "import netspec; print(netspec.list_models('resnet*'))", cwd=tmp_path)
    assert listed.stdout.strip() == "['resnet101', 'resnet152', 'resnet18', 'resnet34', 'resnet50']"


@pytest.mark.slow
@pytest.mark.torch
def test_the_installed_wheel_trains_the_main_command_by_name(installed_wheel, tmp_path):
    venv, _ = installed_wheel
    trained = _run_installed(venv, "-m", "netspec", "train", "alexnet-digits", "--epochs", "1", "--max-steps", "2",
                             "--run-dir", str(tmp_path / "run"), cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "done: best val top-1" in trained.stdout
    assert (tmp_path / "run" / "checkpoints").is_dir()
    built = _run_installed(venv, "-c", "import netspec; m = netspec.create_model('resnet18', num_classes=3); "
                           "print(m.fc.out_features)", cwd=tmp_path)
    assert built.stdout.strip() == "3", built.stderr[-3000:]
