"""Write outputs under a temporary name beside the target and rename when complete.

A crash, a kill or a bad input never leaves a half-written file or folder at the final path.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from led_hf.errors import LedError


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder beside `path`; on success it replaces `path`, on error it is removed."""
    target = Path(path)
    if target.exists() and not overwrite:
        raise LedError(f"{target} already exists (pass --overwrite to replace it)")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
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


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator:
    """Open a temporary file beside `path` for writing; it is renamed to `path` only if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, staging = tempfile.mkstemp(prefix=f".{target.name}.tmp-", dir=target.parent)
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
