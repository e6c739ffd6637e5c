"""Faults during training and hostile files: kill -9 at random moments, damaged checkpoints, a
full disk, data that changes under a run, a .keras file carrying code, names that try to escape
the output folder. Each guard has a test that fails without it."""

from __future__ import annotations

import json
import shutil

import pytest

from netspec import check_file
from netspec.codegen.backend import get_backend
from netspec.errors import DataError, RunError, WeightsError
from netspec.files.fileio import sha256_file
from netspec.train.checkpoints import CheckpointStore

from .data_helpers import make_folder
from .test_training import BACKENDS, TINY, comparable, train


def checkpoint_is_sound(run, spec, *, links_current: bool = False) -> bool:
    """Every checkpoint the manifest names is complete: its files match their recorded checksums,
    and its weights load; so do the convenience links checkpoints/{last,best}.safetensors, which
    equal the manifest's files except just after a kill between the manifest and their refresh."""
    store = CheckpointStore(run / "checkpoints")
    net = check_file(spec)
    for tag in ("last", "best"):
        if not store.has(tag):
            continue
        files = store.files(tag)  # raises when a file is missing or damaged
        get_backend("torch").load(net, weights=files["weights"])
        link = run / "checkpoints" / f"{tag}.safetensors"
        if link.exists():
            get_backend("torch").load(net, weights=link)
            assert sha256_file(link) == sha256_file(files["weights"]) or not links_current
    return True


def leftovers(run) -> list[str]:
    """What a finished run's checkpoints/ holds beyond the manifest, its links and the folders it names."""
    folder = run / "checkpoints"
    assert checkpoint_is_sound(run, run / "spec.yaml", links_current=True)
    manifest = json.loads((folder / "manifest.json").read_text())
    named = {manifest[tag]["folder"] for tag in ("last", "best") if manifest.get(tag)}
    expected = {"manifest.json", "last.safetensors", "best.safetensors", *named}
    return sorted(p.name for p in folder.iterdir() if p.name not in expected)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("damage", ["bit flip", "truncated state"])
def test_a_damaged_checkpoint_is_named_on_resume(write_spec, tmp_path, backend, damage):
    spec = write_spec(TINY)
    train(spec, tmp_path / "run", backend=backend, max_steps=2)
    files = CheckpointStore(tmp_path / "run" / "checkpoints").files("last")
    if damage == "bit flip":
        target = files["weights"]
        data = bytearray(target.read_bytes())
        data[-100] ^= 0x01  # one bit of one weight
    else:
        target = files["state"]
        data = bytearray(target.read_bytes()[: target.stat().st_size // 2])
    expected = "its checksum differs from the one recorded in manifest.json"
    target.unlink()  # a new file: the hard link checkpoints/last.safetensors keeps the good bytes
    target.write_bytes(bytes(data))
    with pytest.raises(RunError) as caught:
        train(spec, tmp_path / "run", backend=backend, resume=True)
    problem = caught.value.problems[0]
    assert problem.message.startswith(f"the checkpoint {target} is damaged")
    assert expected in problem.message and "checkpoints/best.safetensors" in problem.hint


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_image_deleted_under_a_run_is_named(write_spec, tmp_path, backend):
    root = make_folder(tmp_path / "data", classes=tuple("abcdefghij"), per_class=2)
    spec = write_spec(TINY.replace("data: {dataset: digits, resize: 18, random_crop: true}",
                                   f"data: {{dataset: imagefolder, path: '{root}', resize: 18}}"))
    original_sources = __import__("netspec.train.sources", fromlist=["image_folders"])
    real = original_sources.image_folders
    gone = root / "train" / "e" / "1.png"

    def list_then_delete(*args, **kwargs):
        sources = real(*args, **kwargs)
        gone.unlink()  # after the listing, before the first epoch reads it
        return sources

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(original_sources, "image_folders", list_then_delete)
        with pytest.raises(DataError, match=f"cannot decode image {gone}: .*No such file"):
            train(spec, tmp_path / "run", backend=backend)


@pytest.mark.keras
def test_a_keras_file_carrying_code_is_refused_and_never_run(tmp_path):
    keras = pytest.importorskip("keras")
    from netspec.codegen.backend import get_backend

    marker = tmp_path / "pwned"
    inputs = keras.Input((4,))
    outputs = keras.layers.Lambda(lambda x, m=str(marker): (open(m, "w").close(), x)[1])(inputs)  # noqa: SIM115
    hostile = tmp_path / "hostile.keras"
    keras.Model(inputs, outputs).save(hostile)
    marker.unlink(missing_ok=True)
    with pytest.raises(ValueError, match="(?i)lambda"):
        keras.saving.load_model(hostile)  # safe mode, as netspec loads models
    net = check_file_text(tmp_path, "name: tiny\ninput: [4]\nlayers:\n  - {type: linear, out_features: 4}\n")
    with pytest.raises(WeightsError):
        get_backend("keras").load(net, weights=hostile)  # weights only: the Lambda is never deserialized
    assert not marker.exists()


def check_file_text(folder, text):
    path = folder / "spec.yaml"
    path.write_text(text)
    return check_file(path)


@pytest.mark.parametrize("name", ["../../evil", "a/b", "x\\y", ".hidden", "con sole"])
def test_a_spec_name_cannot_lead_outside_the_output_folder(tmp_path, name):
    from netspec.errors import SpecError as Error

    with pytest.raises(Error, match="name"):
        check_file_text(tmp_path, f"name: '{name}'\ninput: [4]\nlayers:\n  - {{type: linear, out_features: 4}}\n")


def record(epoch: int, **changes) -> dict:
    """A metrics.jsonl line as `netspec train` writes it."""
    return {"epoch": epoch, "step": 10 * epoch, "train_loss": 1.0, "train_top1": 0.5, "val_loss": 1.0,
            "val_top1": 0.5, "val_top5": 0.9, "lr": 0.01, "images_per_s": 100.0, "seconds": 1.0, **changes}


def test_a_metrics_line_cut_short_by_a_kill_is_dropped(tmp_path):
    from netspec.train.rundir import RunDir

    run = RunDir(tmp_path / "run", resume=False)
    try:
        run.append_metrics(record(1))
        with open(run.metrics_path, "a") as handle:
            handle.write('{"epoch": 2, "val_to')  # killed mid-write
        assert run.read_metrics() == [record(1)]
        run.truncate_metrics(1)
        assert run.metrics_path.read_text() == json.dumps(record(1)) + "\n"
        run.metrics_path.write_text(f"{json.dumps(record(1))}\nnot json\n{json.dumps(record(2))}\n")
        with pytest.raises(RunError, match="metrics.jsonl is damaged at line 2: it is not JSON"):
            run.read_metrics()
    finally:
        run.close()


@pytest.mark.parametrize(("line", "why"), [
    ("[1, 2]", "the line is not a JSON object"),
    ('"epoch"', "the line is not a JSON object"),
    (json.dumps({k: v for k, v in record(2).items() if k != "epoch"}), "'epoch' is missing or not a number"),
    (json.dumps(record(2, val_top1="high")), "'val_top1' is missing or not a number"),
    (json.dumps(record(5)), "'epoch' is 5 where 2 was expected"),
    (json.dumps(record(2, val_top1=float("nan"))), "'val_top1' is nan, not an accuracy from 0 to 1"),
    (json.dumps(record(2, train_top1=7)), "'train_top1' is 7, not an accuracy from 0 to 1"),
])
def test_a_metrics_file_with_foreign_lines_is_named_on_resume_and_report(tmp_path, line, why):
    from typer.testing import CliRunner

    from netspec.cli import app

    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"backend": "torch", "overrides": []}))
    (run / "spec.yaml").write_text("name: tiny\ninput: [4]\nlayers:\n  - {type: linear, out_features: 4}\n")
    (run / "metrics.jsonl").write_text(f"{json.dumps(record(1))}\n{line}\n{json.dumps(record(3))}\n")
    for command in (["train", "--resume", str(run)], ["report", str(run), "-o", str(tmp_path / "r.html")]):
        result = CliRunner().invoke(app, command)
        assert result.exit_code == 2, result.output
        assert f"metrics.jsonl is damaged at line 2: {why}" in " ".join(result.output.split())
    assert not (tmp_path / "r.html").exists()


@pytest.mark.parametrize(("content", "why"), [
    ("[]", "it holds a JSON list, not an object"),
    ('{"overrides": []}', "'backend' is missing or not a str"),
    ('{"backend": "torch", "overrides": "x"}', "'overrides' is missing or not a list"),
    ('{"backend": "torch", "overrides": [], "spec_file": "a\\u0000b"}', "it contains a NUL character"),
    ('{"backend": "torch", "overrides": [], "input_shape": [3, -1, 4]}', "'input_shape' must be"),
    ('{"backend": "torch", "overrides": [], "max_steps": "many"}', "'max_steps' must be a positive integer"),
    ('{"backend": "torch", "overrides": [], "versions": 5}', "'versions' must be an object of version strings"),
    ('{"backend": "torch", "overrides": [], "command": 3}', "'command' must be a list of strings"),
    ('{"backend": "torch", "overrides": [], "spec": 3}', "'spec' must be an object (the resolved spec)"),
    ("{not json", "cannot read"),
])
def test_a_damaged_run_json_is_named_on_resume_and_report(tmp_path, content, why):
    from typer.testing import CliRunner

    from netspec.cli import app

    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(content)
    for command in (["train", "--resume", str(run)], ["report", str(run), "-o", str(tmp_path / "r.html")]):
        result = CliRunner().invoke(app, command)
        assert result.exit_code == 2, result.output
        assert why in " ".join(result.output.split())
        assert "Traceback" not in result.output
    assert sorted(p.name for p in run.iterdir()) == ["run.json"]  # nothing written, nothing removed


@pytest.mark.torch
def test_killed_between_the_first_metrics_line_and_its_checkpoint_the_run_starts_over(write_spec, tmp_path):
    spec = write_spec(TINY)
    reference = train(spec, tmp_path / "reference", max_steps=2)
    run = tmp_path / "run"
    train(spec, run, max_steps=2)
    shutil.rmtree(run / "checkpoints")  # as if killed before the first checkpoint landed
    (run / "checkpoints").mkdir()
    (run / "metrics.jsonl").write_text((run / "metrics.jsonl").read_text().splitlines()[0] + "\n")
    resumed = train(spec, run, resume=True)
    assert comparable(resumed) == comparable(reference)


# --- a damaged checkpoint list never costs an intact checkpoint (issue #22, item 15) ---------------

def _snapshot(folder) -> dict[str, str]:
    """Every file under ``folder`` and its SHA-256: what the user has on disk."""
    return {str(p.relative_to(folder)): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def _manifest(run) -> tuple[object, dict]:
    path = run / "checkpoints" / "manifest.json"
    return path, json.loads(path.read_text())


def _rename_state_entry(doc):
    doc["last"]["files"]["state"]["name"] = "renamed-" + doc["last"]["files"]["state"]["name"]


def _entry_without_folder(doc):
    del doc["last"]["folder"]


def _files_not_a_mapping(doc):
    doc["best"]["files"] = ["weights.safetensors"]


def _folder_outside(doc):
    doc["last"]["folder"] = "../.."


@pytest.mark.torch
@pytest.mark.parametrize(("damage", "expected"), [
    (_rename_state_entry, "is damaged: the file is missing"),
    (_entry_without_folder, "its 'last' entry does not name a checkpoint folder"),
    (_files_not_a_mapping, "its 'best' entry lists no files"),
    (_folder_outside, "its 'last' entry does not name a checkpoint folder"),
], ids=["renamed-entry", "no-folder", "files-a-list", "folder-outside"])
def test_a_damaged_list_is_named_and_nothing_is_removed_and_a_repair_resumes(write_spec, tmp_path, damage, expected):
    """Renaming one entry and resuming deleted the intact state file (tidying trusted the list),
    and the run stayed unresumable after the list was repaired; other damage was an internal error."""
    spec, run = write_spec(TINY), tmp_path / "run"
    train(spec, run, max_steps=2)
    path, doc = _manifest(run)
    original = path.read_text()
    before = _snapshot(run / "checkpoints")
    damage(doc)
    path.write_text(json.dumps(doc))
    with pytest.raises(RunError) as caught:
        train(spec, run, resume=True)
    assert expected in caught.value.problems[0].message
    after = _snapshot(run / "checkpoints")
    assert {name: digest for name, digest in after.items() if name != "manifest.json"} == \
        {name: digest for name, digest in before.items() if name != "manifest.json"}
    path.write_text(original)  # the user repairs the list: the run goes on from its checkpoint
    first = json.loads((run / "run.json").read_text())
    records = train(spec, run, resume=True)
    assert [r["epoch"] for r in records] == list(range(1, len(records) + 1)) and first


@pytest.mark.torch
def test_a_list_without_its_last_entry_does_not_start_the_run_over(write_spec, tmp_path):
    """It silently restarted from epoch 0 and emptied metrics.jsonl."""
    spec, run = write_spec(TINY), tmp_path / "run"
    train(spec, run, max_steps=2)
    metrics = (run / "metrics.jsonl").read_text()
    path, doc = _manifest(run)
    del doc["last"]
    path.write_text(json.dumps(doc))
    before = _snapshot(run / "checkpoints")
    with pytest.raises(RunError) as caught:
        train(spec, run, resume=True)
    assert "names no 'last' checkpoint, yet checkpoints/ holds e" in caught.value.problems[0].message
    assert (run / "metrics.jsonl").read_text() == metrics
    assert _snapshot(run / "checkpoints") == before
    (run / "checkpoints" / "manifest.json").unlink()  # the list lost altogether: the same
    with pytest.raises(RunError, match="names no 'last' checkpoint"):
        train(spec, run, resume=True)
    assert (run / "metrics.jsonl").read_text() == metrics


# --- run files that checksums cannot vouch for (issue #22, item 18) ------------------------------

@pytest.mark.parametrize(("trained", "claimed"), [("torch", "keras"), ("keras", "torch")])
def test_a_backend_switched_in_run_json_is_named_not_called_damage(write_spec, tmp_path, trained, claimed):
    """It was diagnosed as "state.pt is damaged: header too large" (Keras reading torch's file)."""
    pytest.importorskip(claimed)
    spec, run = write_spec(TINY), tmp_path / "run"
    train(spec, run, backend=trained, max_steps=2)
    info = (run / "run.json").read_text()
    (run / "run.json").write_text(info.replace(f'"backend": "{trained}"', f'"backend": "{claimed}"'))
    before = _snapshot(run)
    with pytest.raises(RunError) as caught:
        train(spec, run, resume=True)
    [problem] = caught.value.problems
    state = {"torch": "state.pt", "keras": "state.safetensors"}
    assert problem.message.endswith(f"was written by another backend (its training state is {state[trained]}; "
                                    f"the {claimed} backend writes {state[claimed]}), yet run.json says '{claimed}'")
    assert "damaged" not in problem.message and _snapshot(run) == before
    (run / "run.json").write_text(info)
    assert [r["epoch"] for r in train(spec, run, resume=True)] == [1, 2, 3]


def _forge_loop_state(run, change) -> None:
    """Rewrite the last checkpoint's loop state and record the new file's checksum, as a forger would."""
    import torch

    path, doc = _manifest(run)
    entry = doc["last"]["files"]["state"]
    state_path = run / "checkpoints" / doc["last"]["folder"] / entry["name"]
    state = torch.load(state_path, weights_only=True)
    change(state["loop"])
    torch.save(state, state_path)
    entry.update(sha256=sha256_file(state_path), bytes=state_path.stat().st_size)
    path.write_text(json.dumps(doc))


@pytest.mark.torch
@pytest.mark.parametrize(("change", "why"), [
    (lambda loop: loop.update(epoch="2"), "has no count 'epoch'"),
    (lambda loop: loop.update(batches_done=-4), "has no count 'batches_done'"),
    (lambda loop: loop.update(best_top1=float("nan")), "has no 'best_top1' from -1 to 1"),
    (lambda loop: loop.pop("partial"), "has no 'partial' sums of the epoch"),
    (lambda loop: loop["schedule"].update(lr=0.0), "has no learning-rate schedule"),
], ids=["epoch-text", "negative-steps", "nan-best", "no-partial", "zero-lr"])
def test_a_forged_loop_state_is_named(write_spec, tmp_path, change, why):
    """Each was an internal error (or a run that went on from a nonsense position)."""
    spec, run = write_spec(TINY), tmp_path / "run"
    train(spec, run, max_steps=2)
    _forge_loop_state(run, change)
    metrics = (run / "metrics.jsonl").read_text()
    with pytest.raises(RunError) as caught:
        train(spec, run, resume=True)
    [problem] = caught.value.problems
    assert f"state.pt is damaged: its loop state {why}" in problem.message
    assert (run / "metrics.jsonl").read_text() == metrics
