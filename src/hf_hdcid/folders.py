"""Writing the folders users load: one writer per folder, and a folder is complete or absent.

Every command that writes a folder (the pretraining output directory, shard folders, model folders
written by ``toc`` / ``convert-original`` / ``card``) holds :func:`exclusive_folder` on it while it
works, and publishes folders that users load through :func:`staged_folder`:

* **Lock.** An exclusive ``flock`` on a hidden sibling file ``.<name>.hdcid-lock``, in which the holder
  writes who it is (pid, host, command, start time). A second writer fails at once with
  :class:`FolderBusyError` naming the holder. The kernel releases the lock when its holder dies (also
  by SIGKILL), so a stale lock file is taken over by the next writer with no clean-up; a holder
  deletes the file when it releases it (waiters check the inode, so that is race-free). ``flock`` is
  per host: two machines writing one folder over NFS are not excluded.
* **Publication.** The content is written into a hidden temporary sibling ``.<name>.tmp-<id>`` and
  renamed into place only when complete; an older folder under the name is moved aside first and
  deleted once the new one is in place (:func:`replace_folder`). A kill leaves either the old complete
  folder or the new one under the name, never a mix; a failure (a full disk, too) leaves the old one.
  Temporaries of killed writers are deleted by the next writer of the same folder (it holds the lock,
  so nobody else is writing them).
* **Disk errors** (no space, read-only file system, permission) become one line naming the path, the
  free space and how much had been written.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import socket
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["FolderBusyError", "LOCK_SUFFIX", "check_writable_folder", "discard_folder", "disk_errors", "exclusive_folder", "folder_size",
           "lock_file", "replace_folder", "staged_folder", "disk_error", "write_error"]

LOCK_SUFFIX = ".hdcid-lock"
TMP_MARK = ".tmp-"
OLD_MARK = ".old-"


class FolderBusyError(OSError):
    """Another process is writing the folder (``errno`` EBUSY)."""

    def __init__(self, message: str):
        super().__init__(message)
        self.errno = errno.EBUSY


def lock_file(folder: str | os.PathLike) -> Path:
    """The lock of ``folder``: a hidden sibling file (the folder itself may not exist yet)."""
    folder = Path(folder).absolute()
    return folder.parent / f".{folder.name}{LOCK_SUFFIX}"


def _describe_holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(info["started"])))
        return f"pid {info['pid']} on {info['host']}, '{info['command']}', since {started}"
    except (OSError, ValueError, KeyError, TypeError):
        return "holder not yet recorded"


def _busy(folder: Path, path: Path) -> FolderBusyError:
    return FolderBusyError(f"{folder} is being written by another process ({_describe_holder(path)}): "
                                        "wait for it to finish or write elsewhere")


def _acquire(path: Path, folder: Path) -> int:
    """An open descriptor of ``path`` holding its exclusive flock. Retries when the file it locked was
    deleted meanwhile by a releasing holder (inode check), so deleting lock files on release is safe."""
    import fcntl

    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise _busy(folder, path) from None
        except BaseException:
            os.close(fd)
            raise
        try:
            current = os.stat(path).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(fd).st_ino:
            return fd
        os.close(fd)  # we locked a file that its holder deleted on release: lock the new one


@contextlib.contextmanager
def exclusive_folder(folder: str | os.PathLike, command: str | None = None) -> Iterator[Path]:
    """Hold the exclusive write lock of ``folder`` (module docstring) for the ``with`` block.

    Raises :class:`FolderBusyError` at once if another process (or another ``with`` block of this
    one) holds it. Yields the absolute path of ``folder``; creates its parent folder if needed. The
    lock file holds the holder's description and is deleted on release. On systems without
    ``fcntl`` (Windows) py-filelock's lock is used instead and its file stays."""
    folder = Path(folder).absolute()
    path = lock_file(folder)
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise disk_error(err, folder, "creating the parent of") from None
    try:
        import fcntl  # noqa: F401
    except ImportError:
        with _filelock(path, folder):
            _remove_stale_temporaries(folder)
            yield folder
        return
    try:
        fd = _acquire(path, folder)
    except FolderBusyError:
        raise
    except OSError as err:
        raise disk_error(err, folder, "locking") from None
    try:
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
                  "command": command or " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:200]}
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(holder).encode())
        _remove_stale_temporaries(folder)
        yield folder
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # still holding the lock: a waiter that opened it retries on a new file
        os.close(fd)


@contextlib.contextmanager
def _filelock(path: Path, folder: Path) -> Iterator[None]:
    from filelock import FileLock, Timeout

    lock = FileLock(path, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise FolderBusyError(f"{folder} is being written by another process: wait for it to finish "
                              "or write elsewhere") from None
    try:
        yield
    finally:
        lock.release()


def _remove_stale_temporaries(folder: Path) -> None:
    """Temporaries (and moved-aside old copies) of earlier writers of ``folder``: only called by the
    lock holder, so no live writer owns them."""
    for mark in (TMP_MARK, OLD_MARK):
        for stale in folder.parent.glob(f".{folder.name}{mark}*"):
            if stale.is_dir() and not stale.is_symlink():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    stale.unlink()


def _move_aside(path: Path) -> Path:
    aside = path.with_name(f".{path.name}{OLD_MARK}{uuid.uuid4().hex[:8]}")
    os.replace(path, aside)
    return aside


def discard_folder(path: Path) -> None:
    """Delete ``path``: renamed aside first, so that a kill half-way through never leaves a partly
    deleted folder under its name (a partly deleted checkpoint must not look complete)."""
    shutil.rmtree(_move_aside(Path(path)), ignore_errors=True)


def replace_folder(tmp: Path, final: Path) -> None:
    """``tmp`` takes the place of ``final``; an older ``final`` is moved aside first and deleted once
    the new one is in place (restored if that rename fails)."""
    tmp, final = Path(tmp), Path(final)
    old = _move_aside(final) if final.exists() or final.is_symlink() else None
    try:
        os.replace(tmp, final)
    except BaseException:
        if old is not None:
            os.replace(old, final)
        raise
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink()


def check_writable_folder(path: str | os.PathLike, field: str) -> Path:
    """Create ``path`` if needed and write a probe file into it: a bad ``--out`` fails before any work
    (ValueError naming ``field``)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{field}: expected a folder, got {str(path)!r}, an existing file")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write_test_{uuid.uuid4().hex}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        raise ValueError(f"{field}: {path} is not writable ({disk_error(err, path, 'writing into')})") from None
    return path


def folder_size(path: Path) -> int:
    """Bytes in the files under ``path`` (0 if it does not exist)."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else 0


def _free_bytes(path: Path) -> int | None:
    for candidate in (path, *path.parents):
        try:
            return shutil.disk_usage(candidate).free
        except OSError:
            continue
    return None


def disk_error(err: OSError, path: Path, action: str = "writing", written: int | None = None) -> OSError:
    """One-line OSError for a full disk / read-only file system / missing permission while ``action``
    ``path``; other errors are returned unchanged."""
    path = Path(path)
    free = _free_bytes(path)
    free_text = "unknown" if free is None else f"{free / 2**20:.1f} MB"
    done = "" if written is None else f", {written / 2**20:.1f} MB written before it failed"
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return OSError(err.errno, f"no space left on the device while {action} {path}: {free_text} free{done}; "
                                  "free some space (or write elsewhere) and run again; nothing was replaced")
    if err.errno == errno.EROFS:
        return OSError(err.errno, f"read-only file system: cannot write {path} ({action})")
    if err.errno in (errno.EACCES, errno.EPERM):
        return OSError(err.errno, f"permission denied {action} {path} ({err.filename or path})")
    return err


#: how writers that are not the OS word a failed write, by the errno it stands for: torch's zip writer
#: (``unexpected pos 931264 vs 931156``, ``file write failed``), safetensors (``... (os error 28)``)
_WRITER_WORDS = ((errno.EROFS, ("read-only file system", "os error 30")),
                 (errno.ENOSPC, ("unexpected pos", "file write failed", "no space left", "storagefull", "os error 28",
                                 "disk quota", "os error 122")))


def write_error(err: BaseException, path: Path, action: str = "writing", written: int | None = None) -> BaseException:
    """Any failed write -> :func:`disk_error`'s one line when it is a full disk, a read-only file system
    or a missing permission, found as an OSError anywhere in the exception's chain (``datasets`` wraps
    it in DatasetGenerationError) or in the words of writers that do not raise OSError (torch's zip
    writer, safetensors; their own words are kept in brackets); any other error is returned unchanged."""
    chain, seen = [], err
    while seen is not None and len(chain) < 8:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    for item in chain:
        if isinstance(item, OSError) and item.errno is not None:
            mapped = disk_error(item, path, action, written)
            if mapped is not item:
                return mapped
    text = " ".join(str(item) for item in chain).lower()
    for code, words in _WRITER_WORDS:
        if any(word in text for word in words):
            mapped = disk_error(OSError(code, text), path, action, written)
            reason = " ".join(str(err).split())[:200]  # the writer's own words, on one line
            return OSError(mapped.errno, f"{mapped.strerror} ({type(err).__name__}: {reason})")
    return err


@contextlib.contextmanager
def disk_errors(path: Path, action: str = "writing", written: Callable[[], int] | None = None) -> Iterator[None]:
    """Re-raise a full-disk / read-only / permission error of the block as one line
    (:func:`write_error`; ``written()``: bytes written so far, for the message); other errors pass
    unchanged."""
    try:
        yield
    except Exception as err:  # noqa: BLE001 - torch, safetensors and datasets report a short write differently
        mapped = write_error(err, path, action, written() if written is not None else None)
        if mapped is err:
            raise
        raise mapped from None


@contextlib.contextmanager
def staged_folder(final: str | os.PathLike, *, overwrite: bool = False,
                  replaceable: Callable[[Path], bool] | None = None, what: str = "folder") -> Iterator[Path]:
    """Yield an empty temporary sibling of ``final`` to write into; when the block ends normally it
    becomes ``final`` (module docstring). Hold :func:`exclusive_folder` on ``final`` around it.

    ``final`` must not exist unless it is an empty folder, or ``overwrite`` is true and
    ``replaceable(final)`` (default: any folder) says it may be replaced: checked before the block and
    again just before the rename. On an error the temporary folder is deleted and ``final`` is left
    as it was; disk errors are re-raised as :func:`disk_error`."""
    final = Path(final).absolute()

    def check() -> None:
        if not (final.exists() or final.is_symlink()):
            return
        if final.is_dir() and not final.is_symlink() and not any(final.iterdir()):
            return
        if not overwrite:
            raise FileExistsError(f"{final} already exists (use --overwrite / overwrite=True to replace it)")
        if final.is_symlink() or not final.is_dir() or (replaceable is not None and not replaceable(final)):
            raise FileExistsError(f"{final} exists and is not a {what}: refusing to replace it even with overwrite")

    check()
    tmp = final.parent / f".{final.name}{TMP_MARK}{uuid.uuid4().hex[:8]}"
    try:
        with disk_errors(final, "writing", lambda: folder_size(tmp)):
            tmp.mkdir(parents=True)
            yield tmp
            check()
            replace_folder(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
