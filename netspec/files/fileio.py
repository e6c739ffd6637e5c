"""Files on disk: the temporary names writes go to (netspec.files.outputs writes them), flushing, hashing."""

from __future__ import annotations

import os
import re
from pathlib import Path


def partial_affixes(path: str | Path) -> tuple[str, str]:
    """The prefix and suffix of the temporary name a file is written to before it is renamed over
    ``path`` (``.STEM.`` and ``.partial.SUFFIX``, with a random part between): hidden, recognisably
    netspec's, and keeping the ending some writers insist on ('.weights.h5' for Keras weights)."""
    path = Path(path)
    suffix = ".weights.h5" if path.name.endswith(".weights.h5") else path.suffix
    return f".{path.name[:len(path.name) - len(suffix)]}.", f".partial{suffix}"


def leftovers_of(path: str | Path) -> list[Path]:
    """The temporary files a killed process left beside ``path`` while writing it (netspec.files.outputs
    names them: ``.STEM.XXXXXXXX.partial.SUFFIX``)."""
    path = Path(path)
    prefix, suffix = partial_affixes(path)
    pattern = re.compile(rf"{re.escape(prefix)}[A-Za-z0-9_]{{8}}{re.escape(suffix)}")
    try:
        return [p for p in path.parent.iterdir() if pattern.fullmatch(p.name) and p.is_file()]
    except OSError:
        return []


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
