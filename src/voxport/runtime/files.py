"""Outputs that appear whole or not at all: a failed or interrupted run leaves nothing half-written."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from voxport.errors import InputError


def check_output_path(path: str | Path) -> Path:
    """Fail before any work when `path` cannot receive a file."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"output {path} is a directory: expected a file path")
    parent = path.parent
    if parent.exists() and not parent.is_dir():
        raise InputError(f"output {path} cannot be written: {parent} is not a directory")
    if not parent.is_dir():
        raise InputError(f"output directory {parent} does not exist")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise InputError(f"output {path} is not writable")
    return path


@contextmanager
def replaced_atomically(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling of `path` to write; it becomes `path` only when the block succeeds."""
    path = Path(path)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        temporary.chmod(0o666 & ~_umask())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


@contextmanager
def directory_replaced_atomically(directory: str | Path) -> Iterator[Path]:
    """Yield a staging directory beside `directory`; it replaces `directory` only when the block succeeds."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}."))
    try:
        yield staging
        staging.chmod(0o777 & ~_umask())
        if directory.exists():
            shutil.rmtree(directory)
        os.replace(staging, directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _umask() -> int:
    """Temporary files are created private; finished ones get the permissions any new file would."""
    mask = os.umask(0)
    os.umask(mask)
    return mask
