"""Checkpoints that appear as one unit: a kill at any moment leaves either the previous checkpoint
or the new one, never a mix, and never a half-written file that resume would trip over.

    checkpoints/
      manifest.json                  which folder is `last` (and `best`), with each file's SHA-256
      e0003-s0000120-1a2b3c/         one checkpoint: weights.safetensors, state.*
      last.safetensors               hard links to the current weights, for `export --weights`
      best.safetensors

A checkpoint is written into a fresh ``.partial-*`` folder, each file fsynced, the folder renamed
to its final name, and only then the manifest is replaced (atomically) to point at it; the
previous checkpoint's files are removed after that. Resume reads the manifest, so it always finds
the newest complete checkpoint. `best` keeps only its weights (resume needs the full state of
`last` alone), so a run holds one optimizer state on disk, not two.

``BackgroundWrites`` runs a save on a thread of its own, so the next epoch trains while the bytes
reach the disk: the trainer hands it writers over a snapshot of its state, and a write's failure
is raised in the training thread at its next step. That pays only where the host's cores are
free during training (an accelerator trains); on a CPU whose cores all train, the write competes
with the steps and the run got slower (benchmarks/results/profile_alexnet_digits_cpu.json), so
there a checkpoint is written before training goes on.

Writers stream through ``_CheckedFile``, which remembers the OSError a full disk or a file-size
limit raised: torch and safetensors re-raise it as their own exception types, and the user must
hear "No space left on device", not an internal error.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, cast

from netspec.errors import RunError, UserError
from netspec.files.fileio import fsync_path, leftovers_of, sha256_file
from netspec.files.outputs import atomic_write_text

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "netspec-checkpoints/1"
TAGS = ("last", "best")
# what netspec itself names inside checkpoints/ (nothing else there is ever removed)
_OURS = re.compile(r"(\.partial-)?e\d{4,}-s\d{7,}-[0-9a-f]{6}")
_LINK_TEMPORARY = re.compile(r"\.(last|best)\.safetensors\.[0-9a-f]{6}\.link")

Writer = Callable[[BinaryIO], Any]  # writes one file's bytes to the open handle it is given


class _CheckedFile:
    """A binary file that hashes what is written and keeps the first OSError of a write."""

    error: OSError | None

    def __init__(self, path: Path):
        self._handle = open(path, "xb")  # noqa: SIM115  (closed by close())
        self.sha256, self.size, self.error = hashlib.sha256(), 0, None

    def write(self, data) -> int:
        try:
            written = self._handle.write(data)
        except OSError as exc:
            self.error = self.error or exc
            raise
        self.sha256.update(memoryview(data).cast("B")[:written])
        self.size += written
        return written

    def flush(self) -> None:
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()

    def finish(self) -> None:
        """Make the bytes durable (a full disk may only show up here, at flush or fsync)."""
        try:
            self._handle.flush()
            os.fsync(self._handle.fileno())
        except OSError as exc:
            self.error = self.error or exc
            raise
        # the bytes are on disk: their page cache goes back to the free pool, where the next
        # checkpoint's writes find it (measured on the main command: 11.2 s of checkpoint writes -> 7.6 s)
        if hasattr(os, "posix_fadvise"):
            with contextlib.suppress(OSError):
                os.posix_fadvise(self._handle.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)

    # torch.save asks for these on a file-like object
    def tell(self) -> int:
        return self._handle.tell()

    def seek(self, *args) -> int:
        return self._handle.seek(*args)


class CheckpointStore:
    def __init__(self, folder: Path):
        self.folder = Path(folder)

    # --- reading -------------------------------------------------------------------------------

    def manifest(self) -> dict[str, Any]:
        """The checkpoint list, checked whole: an entry it cannot read is named, never guessed at."""
        path = self.folder / MANIFEST
        if not path.is_file():
            return {}
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise _damaged_manifest(path, f"it cannot be read ({exc})") from None
        if not isinstance(doc, dict) or doc.get("format") != MANIFEST_FORMAT:
            raise _damaged_manifest(path, "it is not one netspec wrote")
        for tag in TAGS:
            problem = _entry_problem(doc.get(tag))
            if problem:
                raise _damaged_manifest(path, f"its '{tag}' entry {problem}")
        return doc

    def complete_folders(self) -> list[str]:
        """The names of the checkpoint folders whose writes completed, listed or not."""
        if not self.folder.is_dir():
            return []
        return sorted(p.name for p in self.folder.iterdir()
                      if p.is_dir() and _OURS.fullmatch(p.name) and not p.name.startswith(".partial-"))

    def has(self, tag: str) -> bool:
        return bool(self.manifest().get(tag))

    def files(self, tag: str) -> dict[str, Path]:
        """The files of checkpoint ``tag`` by role ('weights', 'state'), each checked against the
        SHA-256 the manifest recorded; SpecError naming the file when one is missing or damaged."""
        entry = self.manifest().get(tag)
        if not entry:
            raise RunError.single(f"the run in {self.folder.parent} has no '{tag}' checkpoint yet")
        try:
            folder = self.folder / _plain_name(entry["folder"])
            found = {}
            for role, record in entry["files"].items():
                path = folder / _plain_name(record["name"])
                if not path.is_file():
                    raise damaged_checkpoint(path, "the file is missing")
                if sha256_file(path) != record["sha256"]:
                    raise damaged_checkpoint(path, f"its checksum differs from the one recorded in {MANIFEST}")
                found[role] = path
        except (KeyError, TypeError, AttributeError):
            raise damaged_checkpoint(self.folder / MANIFEST, f"its '{tag}' entry is incomplete") from None
        return found

    # --- writing -------------------------------------------------------------------------------

    def save(self, writers: dict[str, tuple[str, Writer]], *, tags: tuple[str, ...], label: str,
             info: dict[str, Any] | None = None, best_roles: tuple[str, ...] = ("weights",)) -> None:
        """Write one checkpoint (``writers``: role -> (file name, writer)) and make it the one
        ``tags`` name. ``best`` records only ``best_roles``: the full state lives with ``last``."""
        token = secrets.token_hex(3)
        final = self.folder / f"{label}-{token}"
        partial = self.folder / f".partial-{label}-{token}"
        records: dict[str, dict[str, Any]] = {}
        try:
            partial.mkdir(parents=True)
            for role, (name, write) in writers.items():
                records[role] = self._write_file(partial / name, write)
            fsync_path(partial)
            os.rename(partial, final)
            fsync_path(self.folder)
        except BaseException as exc:  # a second Ctrl-C too: no partial folder stays behind
            shutil.rmtree(partial, ignore_errors=True)
            if not isinstance(exc, OSError):
                raise
            raise RunError.single(
                f"cannot write the checkpoint in {self.folder}: {exc.strerror or exc}",
                hint="free some space (or raise the file-size limit) and resume the run; "
                     "the previous checkpoint is intact") from None
        doc = self.manifest() or {"format": MANIFEST_FORMAT}
        for tag in tags:
            roles = best_roles if tag == "best" else tuple(records)
            doc[tag] = {"folder": final.name, "files": {role: records[role] for role in roles}, **(info or {})}
        try:
            atomic_write_text(self.folder / MANIFEST, json.dumps(doc, indent=2) + "\n")
        except UserError:
            shutil.rmtree(final, ignore_errors=True)  # never referenced: the previous checkpoint stands
            raise
        self.tidy()

    @staticmethod
    def _write_file(path: Path, write: Writer) -> dict[str, Any]:
        handle = _CheckedFile(path)
        try:
            write(cast(BinaryIO, handle))  # stands in for the file: writers only write and flush
            handle.finish()
        except Exception as exc:
            if handle.error is not None and handle.error is not exc:
                raise handle.error from exc  # the real cause behind a writer's own error type
            raise
        finally:
            handle.close()
        return {"name": path.name, "sha256": handle.sha256.hexdigest(), "bytes": handle.size}

    # --- tidying -------------------------------------------------------------------------------

    def tidy(self) -> int:
        """Point the convenience links at the manifest's weights and remove what no checkpoint
        needs any more: unreferenced checkpoint folders and files, and leftovers of writes a kill
        cut short. Only names netspec gives are touched. Returns the bytes freed."""
        if not self.folder.is_dir():
            return 0
        doc = self.manifest()
        needed: dict[str, set[str]] = {}
        for tag in TAGS:
            entry = doc.get(tag) or {}
            if entry:
                needed.setdefault(entry["folder"], set()).update(r["name"] for r in entry["files"].values())
        # Only a list whose every file is there says what is no longer needed: a list edited by
        # hand, or with its 'last' entry gone, must never cost an intact checkpoint. Then only the
        # leftovers of cut-short writes go.
        trusted = "last" in doc and all((self.folder / folder / name).is_file()
                                        for folder, names in needed.items() for name in names)
        if trusted:
            self._link_weights(doc)
        freed = 0
        for path in self.folder.iterdir():
            if path.is_dir() and not path.is_symlink() and _OURS.fullmatch(path.name):
                if not trusted and not path.name.startswith(".partial-"):
                    continue
                keep = needed.get(path.name)
                for item in path.iterdir():
                    if keep is None or item.name not in keep:
                        freed += _remove(item)
                if keep is None:
                    path.rmdir()
            elif path.is_file() and _LINK_TEMPORARY.fullmatch(path.name):
                freed += _remove(path)
        for leftover in leftovers_of(self.folder / MANIFEST):
            freed += _remove(leftover)
        return freed

    def _link_weights(self, doc: dict[str, Any]) -> None:
        """``checkpoints/{tag}.safetensors``: a hard link to that checkpoint's weights (no copy)."""
        for tag in TAGS:
            entry = doc.get(tag) or {}
            link = self.folder / f"{tag}.safetensors"
            if not entry or "weights" not in entry.get("files", {}):
                continue
            target = self.folder / entry["folder"] / entry["files"]["weights"]["name"]
            if link.exists() and not link.is_symlink() and link.samefile(target):
                continue
            temporary = self.folder / f".{tag}.safetensors.{secrets.token_hex(3)}.link"
            try:
                os.link(target, temporary)
            except OSError:  # a filesystem without hard links: a copy, written atomically
                shutil.copyfile(target, temporary)
            os.replace(temporary, link)


class BackgroundWrites:
    """One checkpoint write at a time, on a background thread. The thread is not a daemon: at exit
    (a second Ctrl-C too) Python waits for the write to finish, so it is never cut short by the
    program; a kill leaves what the store's protocol leaves, the previous checkpoint or the new."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def start(self, write: Callable[[], None]) -> None:
        """Run ``write`` in the background once the previous write has finished (its failure is
        raised here, and this write is not started)."""
        self.wait()

        def run() -> None:
            try:
                write()
            except BaseException as exc:  # handed to the training thread by failed()/wait()
                self._error = exc

        self._thread = threading.Thread(target=run, name="netspec-checkpoint-write")
        self._thread.start()

    @property
    def failed(self) -> bool:
        """Whether a write has failed (cheap enough to ask after every step)."""
        return self._error is not None

    def wait(self, *, raise_failure: bool = True) -> None:
        """Block until the write in progress is on disk; raise its failure, if any."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        error, self._error = self._error, None
        if error is not None and raise_failure:
            raise error


def _entry_problem(entry: Any) -> str | None:
    """What is wrong with one tag's entry of the list (None or {} is no entry), or None."""
    if entry is None or entry == {}:
        return None
    if not isinstance(entry, dict) or not _is_plain_name(entry.get("folder")) or not _OURS.fullmatch(entry["folder"]):
        return "does not name a checkpoint folder"
    files = entry.get("files")
    if not isinstance(files, dict) or not files:
        return "lists no files"
    for role, record in files.items():
        if not isinstance(record, dict) or not _is_plain_name(record.get("name")) \
                or not isinstance(record.get("sha256"), str):
            return f"has an unreadable record for its {role!r} file"
    return None


def _damaged_manifest(path: Path, why: str) -> RunError:
    return RunError.single(f"the checkpoint list {path} is damaged: {why}",
                           hint="restore it (nothing in checkpoints/ was removed), or start the run again in a "
                                "new folder; checkpoints/last.safetensors and best.safetensors still hold weights "
                                "to export")


def damaged_checkpoint(path, why: str) -> RunError:
    return RunError.single(f"the checkpoint {path} is damaged: {why}",
                           hint="checkpoints/best.safetensors still holds the best weights for export; "
                                "start the run again to train further")


def _is_plain_name(name: Any) -> bool:
    """A manifest names files inside checkpoints/ only."""
    return isinstance(name, str) and bool(name) and "/" not in name and "\\" not in name \
        and name not in (".", "..") and "\0" not in name


def _plain_name(name: Any) -> str:
    if not _is_plain_name(name):
        raise TypeError(name)
    return name


def _remove(path: Path) -> int:
    try:
        size = path.lstat().st_size
        path.unlink()
        return size
    except OSError:
        return 0
