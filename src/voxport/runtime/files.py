"""Outputs that appear whole or not at all: a failed, interrupted or killed run never damages an existing
file, and leaves nothing half-written under the target's name.

Every output is written to a temporary beside its target and renamed into place when complete (a rename
within one directory is atomic). Temporaries are named `.NAME.voxport-PID-XXXX`: a run that was killed
(SIGKILL, where nothing can clean up) leaves one, and the next run checking that directory removes it.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from voxport.errors import InputError

_TAG = "voxport"
_TEMPORARY = re.compile(rf"^\..*\.{_TAG}-(\d+)-[^/]*$")  # .NAME.voxport-PID-XXXX, PID = the writing process


def check_output_path(path: str | Path) -> Path:
    """Fail before any work when `path` cannot receive a file: a temporary is really created beside it."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"output {path} is a directory: expected a file path")
    parent = path.parent
    if parent.exists() and not parent.is_dir():
        raise InputError(f"output {path} cannot be written: {parent} is not a directory")
    if not parent.is_dir():
        raise InputError(f"output directory {parent} does not exist")
    _probe(parent, f"output {path}")
    sweep_stale(parent)
    return path


def check_output_dir(directory: str | Path, option: str) -> Path:
    """Fail before any work when files cannot be created in `directory` (made later if missing)."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise InputError(f"{option} {directory} is a file: expected a directory")
    existing = next(parent for parent in (directory, *directory.parents) if parent.exists())
    if not existing.is_dir():
        raise InputError(f"{option} {directory} cannot be created: {existing} is not a directory")
    _probe(existing, f"{option} {directory}")
    sweep_stale(existing)
    return directory


@contextmanager
def replaced_atomically(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling of `path` to write; it becomes `path` only when the block succeeds."""
    path = Path(path)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=_prefix(path), suffix=path.suffix)
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        temporary.chmod(0o666 & ~_umask())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


@contextmanager
def growing_file(path: str | Path) -> Iterator[Path]:
    """Yield `NAME.partial.EXT` beside `path`, for output written while it is made (playable so far).

    It replaces `path` only when the block succeeds, and is removed when the block fails or is interrupted;
    a killed run leaves it under that clearly partial name and never touches `path`.
    """
    path = Path(path)
    partial = path.with_name(f"{path.stem}.partial{path.suffix}")
    try:
        yield partial
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


@contextmanager
def directory_replaced_atomically(directory: str | Path) -> Iterator[Path]:
    """Yield a staging directory beside `directory`; it replaces `directory` only when the block succeeds."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(directory.parent)
    staging = Path(tempfile.mkdtemp(dir=directory.parent, prefix=_prefix(directory)))
    try:
        yield staging
        staging.chmod(0o777 & ~_umask())
        if directory.exists():
            shutil.rmtree(directory)
        os.replace(staging, directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _probe(directory: Path, what: str) -> None:
    """Create and remove a file in `directory`: the only test that tells what writing will really do."""
    try:
        handle, name = tempfile.mkstemp(dir=directory, prefix=_prefix(directory / "probe"))
    except OSError as error:
        raise InputError(f"{what} cannot be written: {error.strerror or error} in {directory}") from None
    os.close(handle)
    os.unlink(name)


def _prefix(path: Path) -> str:
    return f".{path.name}.{_TAG}-{os.getpid()}-"


def sweep_stale(directory: Path) -> None:
    """Remove the temporaries in `directory` left by runs that were killed (their process no longer exists),
    as far as it can: a directory it may read but not write keeps them."""
    for entry in directory.iterdir():
        match = _TEMPORARY.match(entry.name)
        if match is None or _running(int(match.group(1))):
            continue
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            with suppress(OSError):
                entry.unlink(missing_ok=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def _umask() -> int:
    """Temporary files are created private; finished ones get the permissions any new file would."""
    mask = os.umask(0)
    os.umask(mask)
    return mask
