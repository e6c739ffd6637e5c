"""Atomic file writes: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from netspec.errors import OutputError


@contextmanager
def atomic_path(path: str | Path) -> Iterator[str]:
    """Yield a temporary path beside ``path`` to write to; on success it is fsynced and renamed
    over ``path`` (with the usual permissions), on failure removed. Keeps the suffix, since some
    writers (torch.export) insist on it."""
    path = Path(path)
    if not path.parent.is_dir():
        raise OutputError.single(f"cannot write {path}: the folder {path.parent} does not exist",
                                 hint="create it first, or choose another output path")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".partial{path.suffix}", dir=path.parent)
    except OSError as exc:
        raise OutputError.single(f"cannot write {path}: {exc.strerror}",
                                 hint="choose a writable output folder") from None
    os.close(fd)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes files private; exports are ordinary files
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:  # a full disk, a folder made read-only, a quota: the old file stays as it was
        raise OutputError.single(f"cannot write {path}: {exc.strerror or exc}",
                                 hint="free some space or fix the folder's permissions; "
                                      f"the previous {path.name}, if any, is intact") from None
    finally:
        Path(tmp).unlink(missing_ok=True)
    fsync_path(path.parent)


def leftovers_of(path: str | Path) -> list[Path]:
    """The temporary files that :func:`atomic_path` left beside ``path`` when a process was killed
    while writing it (their names are its own: ``.STEM.XXXXXXXX.partial.SUFFIX``)."""
    path = Path(path)
    pattern = re.compile(rf"\.{re.escape(path.stem)}\.[A-Za-z0-9_]{{8}}\.partial{re.escape(path.suffix)}")
    try:
        return [p for p in path.parent.iterdir() if pattern.fullmatch(p.name) and p.is_file()]
    except OSError:
        return []


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        handle.write(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def fsync_path(path: Path) -> None:
    """Flush a file, or a folder's entries (which makes a rename in it durable), to disk; best
    effort, since not every platform can open a directory."""
    try:
        fd = os.open(path, os.O_RDONLY if Path(path).is_dir() else os.O_RDWR)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def sha256_file(path: str | Path) -> str:
    """The file's SHA-256 (hex), streamed: checkpoints record it to detect torn or tampered files."""
    import hashlib

    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
