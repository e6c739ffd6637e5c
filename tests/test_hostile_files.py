"""Hostile weight and run files: memory follows the model, never what a file claims."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from netspec.errors import WeightsError

SMALL = """
    name: small
    input: [4]
    layers:
      - {name: fc, type: linear, out_features: 3}
"""


def sparse_safetensors(path, claimed: int) -> None:
    """A valid-looking safetensors file whose one tensor claims ``claimed`` bytes: the file is that
    large, but sparse, so it costs a few KB of disk."""
    header = json.dumps({"fc.weight": {"dtype": "F32", "shape": [claimed // 4], "data_offsets": [0, claimed]}}).encode()
    with open(path, "wb") as handle:
        handle.write(len(header).to_bytes(8, "little") + header)
        handle.truncate(8 + len(header) + claimed)


@pytest.mark.torch
@pytest.mark.parametrize("command", [["export", "-f", "safetensors"], ["convert", "--to", "keras"]],
                         ids=["export", "convert"])
def test_a_sparse_safetensors_claiming_64_gib_is_refused_by_its_header(write_spec, tmp_path, command):
    """`export` failed with an internal error and `convert --to keras` printed a Rust panic and a
    205-line traceback."""
    spec = write_spec(SMALL)
    weights = tmp_path / "huge.safetensors"
    sparse_safetensors(weights, 64 << 30)
    result = subprocess.run([sys.executable, "-m", "netspec", command[0], str(spec), "--weights", str(weights),
                             *command[1:], "-o", str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"holds {64 << 30:,} bytes of tensors, more than this network's weights could take" in result.stderr
    assert "panic" not in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_damaged_safetensors_header_is_named(tmp_path):
    from netspec.files.state_files import read_state_dict

    weights = tmp_path / "bad.safetensors"
    weights.write_bytes((1 << 40).to_bytes(8, "little") + b"{}")
    with pytest.raises(WeightsError, match="cannot read .* as safetensors: a header of 1,099,511,627,776 bytes"):
        read_state_dict(weights, as_numpy=True)


@pytest.mark.torch
def test_a_huge_curves_png_is_never_read_into_the_report(write_spec, tmp_path):
    """A 3 GiB sparse curves.png in a run folder was read whole: MemoryError."""
    from netspec.views.run_report import MAX_CURVES_BYTES, render_report

    from .test_training import TINY, train

    run = tmp_path / "run"
    train(write_spec(TINY), run, max_steps=2)
    with open(run / "curves.png", "wb") as handle:
        handle.truncate(3 << 30)
    html = render_report(run)
    embedded = html.split('src="data:image/png;base64,')[1].split('"')[0]
    assert 1000 < len(embedded) < MAX_CURVES_BYTES  # the curves drawn anew from metrics.jsonl


def _h5_claiming(path, elements: int) -> None:
    """Keras' weights layout with one variable that claims ``elements`` float32 values and stores
    none of them (unwritten chunks): a few KB on disk, gigabytes when read."""
    import h5py

    with h5py.File(path, "w") as handle:
        variables = handle.create_group("layers").create_group("fc").create_group("vars")
        variables.attrs["name"] = "fc"
        variables.create_dataset("0", shape=(elements,), dtype="f4", chunks=(1 << 20,), compression="gzip")


@pytest.mark.keras
def test_keras_weights_that_claim_more_than_the_network_are_refused_before_reading(write_spec, tmp_path):
    """An 18.7 MB .keras zip bomb for a 10k-parameter spec peaked at 9.1 GB."""
    import zipfile

    from netspec.analysis.checker import check_file
    from netspec.files.state_files import weights_budget
    from netspec_keras import read_keras_weights

    net = check_file(write_spec(SMALL))
    weights = tmp_path / "bomb.weights.h5"
    _h5_claiming(weights, 1 << 31)  # 8 GiB claimed
    assert weights.stat().st_size < 1 << 20
    with pytest.raises(WeightsError, match=f"holds {4 << 31:,} bytes of weights, more than this network's could take"):
        read_keras_weights(weights, weights_budget(net))
    archive = tmp_path / "bomb.keras"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as handle:
        handle.writestr("model.weights.h5", bytes(64 << 20))  # 64 MiB of zeros in a few dozen KB
    assert archive.stat().st_size < 1 << 20
    with pytest.raises(WeightsError, match=f"holds {64 << 20:,} bytes of weights"):
        read_keras_weights(archive, weights_budget(net))
