"""Where results are written, and how. Every command that writes (export, convert, draw, report,
schema, bench) goes through here, so they all keep the same promises:

- an output path that exists (a file, a symbolic link, even a dangling one) is replaced only with
  ``--force``, and never when it is something else than a file: a device such as /dev/null, a
  fifo, a socket, or a folder where a file is expected. netspec replaces only files, and folders
  of the one kind it writes itself (a TensorFlow SavedModel);
- everything one command writes goes to temporary names beside the targets and is renamed into
  place only when all of it has been written: a command that fails leaves nothing behind, not
  even the folders it created;
- a write that fails (a full disk, a file-size limit, a read-only folder) is a user error naming
  the file, also when the writing library (torch, ONNX, h5py, safetensors) reports it as
  something else than an OSError.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from netspec.errors import OutputError, UserError
from netspec.files.fileio import fsync_path, partial_affixes

# errors of the file system, not of netspec: the user can fix them
WRITE_ERRNOS = {errno.EFBIG, errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO,
                errno.ENAMETOOLONG}
SAVEDMODEL_ENTRIES = {"saved_model.pb", "fingerprint.pb", "variables", "assets", "keras_metadata.pb"}


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISFIFO(mode):
        return "a fifo"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    return "a file" if stat.S_ISREG(mode) else "not a regular file"


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        raise OutputError.single(f"cannot write {path}: a part of the path is a file, not a folder",
                                 hint="choose another output path") from None
    except OSError as exc:
        raise OutputError.single(f"cannot write {path}: {exc.strerror}", hint="choose another output path") from None


def is_savedmodel_folder(path: Path) -> bool:
    """A folder that holds a SavedModel and nothing else (what netspec's savedmodel export writes)."""
    try:
        names = {entry.name for entry in os.scandir(path)}
    except OSError:
        return False
    return "saved_model.pb" in names and names <= SAVEDMODEL_ENTRIES


def check_target(path: str | Path, *, force: bool, folder: bool = False) -> None:
    """Refuse to write ``path`` when something is there that must not be replaced: anything
    without ``force``; with it, anything but a file or a symbolic link (which is replaced itself,
    not what it points to), or, for a ``folder`` output, a SavedModel folder."""
    path = Path(path)
    found = _lstat(path)
    if found is None:
        return
    mode = found.st_mode
    if stat.S_ISLNK(mode):
        if not force:
            target = os.readlink(path)
            state = "" if path.exists() else ", which does not exist"
            raise OutputError.single(f"refusing to overwrite {path}: it is a symbolic link to {target}{state}",
                                     hint="pass --force to replace the link itself (never what it points to), "
                                          "or choose another output path")
        return
    if folder and stat.S_ISDIR(mode):
        if not is_savedmodel_folder(path):
            raise OutputError.single(f"refusing to replace the folder {path}: it is not a SavedModel netspec wrote",
                                     hint="netspec never deletes a folder it did not write; choose another output "
                                          "folder")
    elif not stat.S_ISREG(mode):
        raise OutputError.single(f"refusing to write {path}: it is {_kind(mode)}, not a file",
                                 hint="netspec only replaces files it could have written; choose another output path")
    if not force:
        raise OutputError.single(f"refusing to overwrite {path}", hint="pass --force to replace it")


def check_folder(path: str | Path) -> list[Path]:
    """Refuse an output folder when it, or the nearest part of it that exists, is not a folder;
    returns the missing parts, outermost last."""
    path = Path(path)
    missing = []
    probe = path
    while True:
        try:
            found = os.lstat(probe)
        except FileNotFoundError:
            found = None
        except NotADirectoryError:  # an ancestor is a file: keep going up to name it
            found = None
        except OSError as exc:
            raise OutputError.single(f"cannot write into {probe}: {exc.strerror}",
                                     hint="choose another output folder") from None
        if found is not None or probe.parent == probe:
            break
        missing.append(probe)
        probe = probe.parent
    if found is not None and not probe.is_dir():
        raise OutputError.single(f"cannot write into {probe}: it is {_kind(found.st_mode)}, not a folder",
                                 hint="choose another output folder")
    return missing


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync(path: Path) -> None:
    """Flush a file, or every file of a folder, and the folder itself, to disk."""
    if path.is_dir():
        for entry in path.rglob("*"):
            if entry.is_file() and not entry.is_symlink():
                fsync_path(entry)
    fsync_path(path)


@dataclass
class _Staged:
    target: Path
    tmp: Path  # the temporary file, or the temporary folder holding ``tree``'s output
    is_tree: bool
    existed: bool

    @property
    def written(self) -> Path:
        return self.tmp / "out" if self.is_tree else self.tmp


class Outputs:
    """The results of one command, written together or not at all::

        with Outputs(force=force) as out:
            folder = out.folder(out_dir)
            tmp = out.file(folder / "net.safetensors")   # a temporary name beside the target
            write(tmp)
        # every target is in place now; on an error, nothing was written

    Targets are checked when they are added, and again just before the rename. Add each output
    right before writing it: a failed write is reported as the last one added.
    """

    def __init__(self, *, force: bool = False) -> None:
        self.force = force
        self.staged: list[_Staged] = []
        self.created: list[Path] = []  # folders this command created, deepest last

    # --- declaring outputs ---------------------------------------------------------------------------------------

    def folder(self, path: str | Path) -> Path:
        """An output folder: it may exist (a symbolic link to a folder is fine); if not, it is created, and
        removed again when the command fails."""
        path = Path(path)
        missing = check_folder(path)
        for folder in reversed(missing):
            try:
                folder.mkdir()
            except FileExistsError:
                if not folder.is_dir():
                    raise OutputError.single(f"cannot write into {folder}: it is not a folder",
                                             hint="choose another output folder") from None
                continue
            except OSError as exc:
                raise OutputError.single(f"cannot create {folder}: {exc.strerror}",
                                         hint="choose a writable folder") from None
            self.created.append(folder)
        return path

    def file(self, target: str | Path) -> str:
        """A temporary path beside ``target`` to write it to (keeping its suffix, which some writers insist
        on); its folder must exist (see :meth:`folder`)."""
        target = Path(target)
        check_target(target, force=self.force)
        self._check_parent(target)
        try:
            prefix, suffix = partial_affixes(target)
            fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=target.parent)
        except OSError as exc:
            raise OutputError.single(f"cannot write {target}: {exc.strerror}",
                                     hint="choose a writable output folder") from None
        os.close(fd)
        self.staged.append(_Staged(target, Path(tmp), False, _lstat(target) is not None))
        return tmp

    def tree(self, target: str | Path) -> Path:
        """For a format that is a folder (a SavedModel): a path that does not exist yet, in a temporary folder
        beside ``target``, for the writer to create."""
        target = Path(target)
        check_target(target, force=self.force, folder=True)
        self._check_parent(target)
        try:
            tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
        except OSError as exc:
            raise OutputError.single(f"cannot write {target}: {exc.strerror}",
                                     hint="choose a writable output folder") from None
        staged = _Staged(target, tmp, True, _lstat(target) is not None)
        self.staged.append(staged)
        return staged.written

    def _check_parent(self, target: Path) -> None:
        if not target.parent.is_dir():
            raise OutputError.single(f"cannot write {target}: the folder {target.parent} does not exist",
                                     hint="create it first, or choose another output path")

    # --- committing or discarding ------------------------------------------------------------------------------

    def __enter__(self) -> Outputs:
        return self

    def __exit__(self, exc_type, exc, tb) -> Literal[False]:
        if exc is None:
            try:
                self._commit()
            except BaseException as failure:
                self._discard()
                explained = self._explain(failure)
                if explained is not None:
                    raise explained from None
                raise
            return False
        explained = None if isinstance(exc, UserError) else self._explain(exc)
        self._discard()
        if explained is not None:
            raise explained from None
        return False

    def _commit(self) -> None:
        mask = _umask()
        for item in self.staged:
            if item.is_tree and not item.written.is_dir():
                raise RuntimeError(f"the writer of {item.target} wrote no folder")
            # mkstemp and mkdtemp make private files; results are ordinary files
            os.chmod(item.written, (0o777 if item.is_tree else 0o666) & ~mask)
            _fsync(item.written)
        for item in self.staged:  # once more: something may have appeared meanwhile
            check_target(item.target, force=self.force, folder=item.is_tree)
        placed: list[_Staged] = []
        try:
            for item in self.staged:
                if item.is_tree:
                    _place_tree(item)
                else:
                    os.replace(item.tmp, item.target)
                placed.append(item)
        except BaseException:
            for item in placed:
                if not item.existed:
                    _remove(item.target)
            raise
        for folder in {item.target.parent for item in self.staged}:
            _fsync(folder)
        self.staged, self.created = [], []

    def _discard(self) -> None:
        for item in self.staged:
            if item.is_tree:
                shutil.rmtree(item.tmp, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    item.tmp.unlink()
        for folder in reversed(self.created):
            with contextlib.suppress(OSError):
                folder.rmdir()  # only when empty: never what someone else put there meanwhile
        self.staged, self.created = [], []

    def _explain(self, exc: BaseException) -> UserError | None:
        """An OutputError for a failed write (naming the file being written), or None for anything else."""
        if isinstance(exc, UserError):
            return exc
        if not isinstance(exc, Exception):
            return None
        code = getattr(exc, "errno", None)
        if isinstance(exc, MemoryError):  # the memory estimate fell short: a resource, not a bug
            reason: str | None = "out of memory while writing it"
        elif isinstance(exc, OSError) and code in WRITE_ERRNOS:
            reason = os.strerror(code)
        else:
            reason = _reported_reason(exc) or self._limit_reached()
        if reason is None:
            return None
        where = f"cannot write {self.staged[-1].target}" if self.staged else "cannot write the output"
        fix = ("use a machine with more memory" if isinstance(exc, MemoryError) else
               "free some space, raise the file-size limit (ulimit -f) or fix the folder's permissions")
        return OutputError.single(f"{where}: {reason}",
                                  hint=f"{fix}; nothing was written, and files that were there are intact")

    def _limit_reached(self) -> str | None:
        """Why a writer failed, when the file system is the reason: a file at the size limit, or a full disk."""
        try:
            import resource

            limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
            unlimited = limit == resource.RLIM_INFINITY or limit < 0
        except (ImportError, OSError, ValueError):
            limit, unlimited = 0, True
        for item in self.staged:
            files = [p for p in item.tmp.rglob("*") if p.is_file()] if item.is_tree else [item.tmp]
            for path in files:
                with contextlib.suppress(OSError):
                    if not unlimited and path.stat().st_size >= limit:
                        return os.strerror(errno.EFBIG)
        for folder in {item.target.parent for item in self.staged}:
            try:
                space = os.statvfs(folder)
            except OSError:
                continue
            if space.f_bavail * space.f_frsize < 1 << 20:
                return os.strerror(errno.ENOSPC)
        return None


def _reported_reason(exc: BaseException | None) -> str | None:
    """The file system's reason in a writer's own exception (safetensors, TensorFlow, h5py, torch
    report EFBIG or ENOSPC in their message, and may delete the partial file first)."""
    seen = 0
    while exc is not None and seen < 8:
        text = str(exc)
        for code in (errno.EFBIG, errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO):
            if os.strerror(code) in text:
                return os.strerror(code)
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None


def _place_tree(item: _Staged) -> None:
    """Rename a written folder into place; a SavedModel folder that was there (--force) is moved aside
    first and removed after."""
    if _lstat(item.target) is None:
        item.written.rename(item.target)
    else:
        old = item.tmp / "old"
        os.rename(item.target, old)  # a folder, a file or a link: the checks allowed it
        item.written.rename(item.target)
    shutil.rmtree(item.tmp, ignore_errors=True)


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def write_text(path: str | Path, text: str, *, force: bool = False) -> Path:
    """One text file, with the same checks and guarantees as any output; a missing folder is
    created (and removed again if the write fails), as export and draw do."""
    path = Path(path)
    with Outputs(force=force) as out:
        out.folder(path.parent)
        tmp = out.file(path)
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
    return path


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[str]:
    """One file that netspec keeps up to date (a run's metrics, its manifest), as one output: yields
    the temporary path to write; on success it replaces ``path`` (a file, never anything else), on
    failure nothing changes. A reader sees the old file or the new one, never half of one."""
    with Outputs(force=True) as out:
        yield out.file(path)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        handle.write(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))
