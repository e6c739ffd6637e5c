"""Text: token ids as a network's input, the code_lines dataset (which language a line of source
code is in, from files every Python installation has), and `netspec train` of the byte-level CNN
and LSTM examples. The embedding, LSTM and GRU themselves are compared between PyTorch and Keras
by the catalogue tests."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from netspec import check_file
from netspec.cli import app
from netspec.errors import DataError
from netspec.language.spec import DataSpec
from netspec.train.sources import BYTE_VOCABULARY, code_language_files, code_lines, load_sources

from .conftest import SPECS_DIR

CNN = SPECS_DIR / "examples" / "code-language-cnn.yaml"
LSTM = SPECS_DIR / "examples" / "code-language-lstm.yaml"
QUICK = ["--epochs", "1", "--max-steps", "4", "--batch-size", "16", "--device", "cpu"]


def _lines(path) -> set[bytes]:
    return {line.strip() for line in path.read_bytes().splitlines()}


def test_code_lines_are_lines_of_each_languages_files_a_byte_per_token():
    net = check_file(CNN)
    sources = code_lines(net, DataSpec(dataset="code_lines"), 0)
    assert sources.classes == ["python", "c", "shell"]
    ids = np.concatenate([sources.train.ids, sources.val.ids])
    labels = np.concatenate([sources.train.labels, sources.val.labels])
    assert ids.shape[1] == 64 and ids.dtype == np.int64 and ids.min() >= 0 and ids.max() < BYTE_VOCABULARY
    counts = np.bincount(labels)
    assert len(counts) == 3 and counts.min() == counts.max() >= 100  # as many lines of each language
    files = code_language_files()
    rng = np.random.default_rng(1)
    for label, language in enumerate(sources.classes):
        known = set().union(*(_lines(path) for path in files[language]))
        for row in rng.choice(np.flatnonzero(labels == label), 5, replace=False):
            tokens = ids[row]
            padding = int(np.argmax(tokens != 0))  # zeros in front of a short line, none inside it
            assert (tokens[:padding] == 0).all() and (tokens[padding:] > 0).all()
            text = bytes((tokens[padding:] - 1).astype(np.uint8).tolist())
            # the line as it is in one of its language's files, cut to the input's length
            assert any(line.startswith(text) and (len(line) > 64 or line == text) for line in known), text


def test_the_same_seed_draws_the_same_lines_and_another_seed_others():
    net = check_file(LSTM)
    first, again = (code_lines(net, DataSpec(dataset="code_lines"), 0) for _ in range(2))
    other = code_lines(net, DataSpec(dataset="code_lines"), 1)
    assert np.array_equal(first.train.ids, again.train.ids) and np.array_equal(first.val.labels, again.val.labels)
    assert not np.array_equal(first.train.ids, other.train.ids)


def test_a_text_network_and_its_dataset_must_agree(write_spec):
    with pytest.raises(DataError) as image_data:
        load_sources(check_file(LSTM), DataSpec(dataset="digits"))
    assert "token ids" in str(image_data.value) and "code_lines" in str(image_data.value.problems[0].hint)
    with pytest.raises(DataError) as image_net:
        load_sources(check_file(SPECS_DIR / "alexnet-digits.yaml", ["num_classes=3"]), DataSpec(dataset="code_lines"))
    assert "layout: ids" in str(image_net.value.problems[0].hint)
    small = write_spec(LSTM.read_text().replace("num_embeddings: 257", "num_embeddings: 128"))
    with pytest.raises(DataError) as vocabulary:
        load_sources(check_file(small), DataSpec(dataset="code_lines"))
    problem = vocabulary.value.problems[0]
    assert problem.layer == "embedding" and problem.hint == "num_embeddings: 257" and problem.location.line == 10


def test_token_ids_reach_only_an_embedding(write_spec):
    spec = write_spec("""
        name: raw
        input: {shape: [16], layout: ids}
        layers:
          - {name: fc, type: linear, out_features: 3}
    """)
    result = CliRunner().invoke(app, ["check", str(spec)])
    assert result.exit_code == 2, result.output
    assert "fc" in result.output and "integers to look up" in result.output and "embedding" in result.output
    assert ":4:" in result.output  # the layer's line


@pytest.mark.slow
@pytest.mark.parametrize(("spec", "backend"), [pytest.param(CNN, "torch", marks=pytest.mark.torch),
                                               pytest.param(LSTM, "torch", marks=pytest.mark.torch),
                                               pytest.param(LSTM, "keras", marks=pytest.mark.keras)],
                         ids=["cnn-torch", "lstm-torch", "lstm-keras"])
def test_the_text_classifiers_train(spec, backend, tmp_path):
    run = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", str(spec), "--backend", backend, "--run-dir", str(run), *QUICK])
    assert result.exit_code == 0, result.output
    [record] = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert record["step"] == 4 and 0.0 <= record["val_top1"] <= 1.0 and np.isfinite(record["val_loss"])


@pytest.mark.torch
@pytest.mark.slow
def test_bench_feeds_the_reference_loops_token_ids(tmp_path):
    """The hand-written reference loops get token ids below the embedding's vocabulary (random
    floats crashed the embedding); a loop PyTorch cannot run here (the CPU's LSTM has no bfloat16
    kernel without native bfloat16) says so in its row, and the others are measured."""
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(app, ["bench", str(LSTM), "--batch-sizes", "8", "--steps", "2", "--warmup", "1",
                                      "--trials", "1", "-o", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    rows = {row["loop"]: row for row in json.loads(out.read_text())["rows"]}
    assert set(rows) == {"netspec", "eager-fp32", "compiled-bf16"}
    assert rows["netspec"]["images_per_s"] > 0 and rows["eager-fp32"]["images_per_s"] > 0
    compiled = rows["compiled-bf16"]
    assert compiled["images_per_s"] > 0 or compiled["note"].startswith("not run: bfloat16 fails on cpu")
