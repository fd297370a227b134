"""Where a model's files are: a local directory, or a hub id resolved through huggingface_hub.

huggingface_hub reads its usual environment (HF_HOME / HF_HUB_CACHE, HF_ENDPOINT for mirrors,
HF_HUB_OFFLINE, HF_TOKEN), so voxport honours the same settings as every other tool on the machine.
"""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import constants, snapshot_download
from huggingface_hub.errors import (
    GatedRepoError,
    HFValidationError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
)
from huggingface_hub.utils import validate_repo_id

from voxport.errors import CheckpointError, first_line


def resolve_checkpoint(source: str | Path, allow_patterns: list[str] | None = None) -> Path:
    """Return a local directory holding the checkpoint named by `source` (a directory or a hub id)."""
    text = str(source)
    path = Path(text).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise CheckpointError(f"model directory {path} has no config.json: expected a checkpoint directory")
        return path
    if path.exists():
        raise CheckpointError(f"model {path} is a file: expected a checkpoint directory or a hub id")
    if not _is_repo_id(text):
        raise CheckpointError(f"model directory {path} does not exist")
    return _download(text, allow_patterns)


def require_tokenizer_files(path: Path, layouts: tuple[tuple[str, ...], ...]) -> None:
    """Fail, naming the files, when `path` holds none of the tokenizer `layouts` (each a set of files that
    together make one): an interrupted download or a partial copy. The tokenizer libraries' own errors do not
    say which file is missing, and some build an empty tokenizer without complaint."""
    if any(all((path / name).is_file() for name in layout) for layout in layouts):
        return
    expected = " or ".join(" with ".join(layout) for layout in layouts)
    raise CheckpointError(f"{path} has no tokenizer: expected {expected}")


def _is_repo_id(text: str) -> bool:
    if text.startswith((".", "/", "~")) or text.count("/") != 1:
        return False
    try:
        validate_repo_id(text)
    except HFValidationError:
        return False
    return True


def _download(repo_id: str, allow_patterns: list[str] | None) -> Path:
    how_to_get = (
        f"download it where the hub is reachable (`hf download {repo_id}`; gated models need their licence "
        f"accepted and `hf auth login`), then point HF_HUB_CACHE at that cache or pass --model DIR"
    )
    try:
        return Path(snapshot_download(repo_id, allow_patterns=allow_patterns))
    except GatedRepoError:
        raise CheckpointError(
            f"{repo_id} is gated: accept its licence on the hub, then log in (`hf auth login` or HF_TOKEN)"
        ) from None
    except RepositoryNotFoundError:
        raise CheckpointError(f"hub repository {repo_id} not found (a private one needs HF_TOKEN)") from None
    except LocalEntryNotFoundError:
        where = "offline mode is on (HF_HUB_OFFLINE=1)" if constants.HF_HUB_OFFLINE else "the hub is unreachable"
        raise CheckpointError(
            f"{repo_id} is not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and {where}: {how_to_get}"
        ) from None
    except (HfHubHTTPError, OSError) as error:
        raise CheckpointError(f"cannot fetch {repo_id} from the hub ({first_line(error)}): {how_to_get}") from None
