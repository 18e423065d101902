"""Write outputs under a temporary name beside the target and rename when complete.

A crash, a kill or a bad input never leaves a half-written file or folder at the final path.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from led_hf.errors import LedError

# Files whose presence marks a folder as written by led-hf (prepare/encode/index/mine manifests, a model's
# led_config.json, a datasets.save_to_disk folder): only such a folder may be replaced by --overwrite.
OUTPUT_MARKERS = ("manifest.json", "led_config.json", "state.json", "dataset_info.json")


@contextlib.contextmanager
def atomic_directory(
    path: str | os.PathLike, overwrite: bool = False, markers: tuple[str, ...] | None = OUTPUT_MARKERS
) -> Iterator[Path]:
    """Yield an empty temporary folder beside `path`; on success it replaces `path`, on error it is removed.

    `overwrite` replaces only a folder holding one of `markers` (None: any folder), never a file or a
    folder of the user's. One process at a time writes `path` (lock file `.NAME.lock` beside it), which
    lets the writer remove the staging folders of a killed earlier run safely.
    """
    target = Path(path)
    if target.exists() and not overwrite:
        raise LedError(f"{target} already exists (pass --overwrite to replace it)")
    if target.exists():
        check_replaceable(target, markers)
    target.parent.mkdir(parents=True, exist_ok=True)
    with output_lock(target):
        remove_leftovers(target)
        staging = Path(_staged(tempfile.mkdtemp, target, prefix=f".{target.name}.tmp-", dir=target.parent))
        # mkdtemp creates 0700 folders; give the result the permissions a plain mkdir() would have.
        os.chmod(staging, 0o777 & ~_umask())
        try:
            yield staging
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        if target.exists():
            trash = target.with_name(f".{target.name}.old-{os.getpid()}")
            target.rename(trash)
            staging.rename(target)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            staging.rename(target)


def check_replaceable(target: Path, markers: tuple[str, ...] | None = OUTPUT_MARKERS) -> None:
    """Refuse to --overwrite a file, or a non-empty folder without any of `markers` (not an output of
    led-hf); an empty folder holds nothing to lose."""
    if not target.is_dir():
        raise LedError(f"{target} is a file, not an output folder of led-hf; refusing to replace it")
    if (
        markers is not None
        and any(target.iterdir())
        and not any((target / marker).exists() for marker in markers)
    ):
        raise LedError(
            f"{target} holds none of {', '.join(markers)}: not an output of led-hf, refusing to replace it "
            "(remove it yourself or choose another output)"
        )


@contextlib.contextmanager
def output_lock(target: str | os.PathLike, wait: bool = False) -> Iterator[None]:
    """Hold `.NAME.lock` beside `target` for the block; a second writer fails at once with one line, or
    with `wait` blocks until the first is done (the lock file then stays: removing it would let a third
    process lock a new file while the second holds the old one)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    lock_path = target.with_name(f".{target.name}.lock")
    handle = open(lock_path, "a+")  # noqa: SIM115 - held for the whole block
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LedError(
                f"another process is writing {target} (it holds {lock_path}); wait for it to finish"
            ) from None
        try:
            yield
        finally:
            if not wait:
                with contextlib.suppress(FileNotFoundError):
                    lock_path.unlink()
    finally:
        handle.close()


def remove_leftovers(target: Path) -> list[Path]:
    """Delete the `.NAME.tmp-*` / `.NAME.old-*` leftovers of a killed run (call with the lock held)."""
    removed = []
    for pattern in (f".{target.name}.tmp-*", f".{target.name}.old-*"):
        for leftover in target.parent.glob(pattern):
            if leftover.is_dir() and not leftover.is_symlink():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    leftover.unlink()
            removed.append(leftover)
    return removed


def _staged(make, target: Path, **where):
    """`make(**where)` (mkdtemp / mkstemp); an OSError names the output asked for, not the temporary name."""
    try:
        return make(**where)
    except OSError as err:
        raise LedError(f"cannot write {target}: {err.strerror or err}") from err


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator:
    """Open a temporary file beside `path` for writing; it is renamed to `path` only if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, staging = _staged(tempfile.mkstemp, target, prefix=f".{target.name}.tmp-", dir=target.parent)
    os.close(fd)
    try:
        with open(staging, mode, encoding=None if "b" in mode else encoding) as handle:
            yield handle
        # mkstemp creates 0600 files; give the result the permissions a plain open() would have.
        os.chmod(staging, 0o666 & ~_umask())
        os.replace(staging, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(staging)
        raise


STAGING_PREFIX = ".staging-"


@contextlib.contextmanager
def staged_contents(folder: str | os.PathLike, last: str) -> Iterator[Path]:
    """Yield an empty staging folder inside `folder` (e.g. a training run's output folder, which also holds
    checkpoints and `led_args.json`, so it cannot be replaced as a whole); on success every entry written
    there replaces the entry of the same name in `folder`, with `last` (the file that marks the folder
    complete, e.g. `led_config.json`) removed before the others move and put back after them. A kill at
    any moment leaves either the old complete folder, the new complete folder, or a folder without
    `last`, which readers refuse; on error the staging folder is removed and `folder` is left as it was.
    """
    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=target))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    os.chmod(staging, 0o777 & ~_umask())
    with contextlib.suppress(FileNotFoundError):
        (target / last).unlink()
    for entry in sorted(staging.iterdir(), key=lambda entry: entry.name == last):  # `last` last
        destination = target / entry.name
        if destination.is_dir() and not destination.is_symlink():
            shutil.rmtree(destination)
        os.replace(entry, destination)
    staging.rmdir()


def remove_stale_staging(folder: str | os.PathLike) -> None:
    """Remove `staged_contents` folders left in `folder` by a killed process."""
    for stale in Path(folder).glob(f"{STAGING_PREFIX}*"):
        shutil.rmtree(stale, ignore_errors=True)
