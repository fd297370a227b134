"""Where a model's files are: a local directory, or a hub id resolved through huggingface_hub or modelscope.

A hub id is ORG/NAME, on the Hugging Face hub unless VOXPORT_HUB=modelscope says otherwise; `modelscope:ORG/NAME`
or `huggingface:ORG/NAME` names the hub for one id. Each hub's own library reads its usual environment, so
voxport honours the same settings as every other tool on the machine: huggingface_hub's HF_HOME / HF_HUB_CACHE,
HF_ENDPOINT, HF_HUB_OFFLINE and HF_TOKEN; modelscope's MODELSCOPE_CACHE, MODELSCOPE_ENDPOINT and
MODELSCOPE_API_TOKEN. ModelScope has no offline switch of its own (only `local_files_only`), so HF_HUB_OFFLINE=1,
the machine's "no hub traffic", keeps it to its cache too; an unreachable ModelScope falls back to the cache, as
huggingface_hub does.
"""

from __future__ import annotations

import os
from pathlib import Path

from huggingface_hub import constants, snapshot_download
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    HFValidationError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
)
from huggingface_hub.utils import validate_repo_id

from voxport.errors import CheckpointError, first_line

HUBS = ("huggingface", "modelscope")
HUB_VARIABLE = "VOXPORT_HUB"  # the hub of a bare ORG/NAME id
DEFAULT_HUB = "huggingface"


def resolve_checkpoint(source: str | Path, allow_patterns: list[str] | None = None) -> Path:
    """Return a local directory holding the checkpoint named by `source` (a directory, a hub id, or
    `modelscope:` / `huggingface:` and a hub id)."""
    text = str(source)
    hub, colon, repo_id = text.partition(":")
    if colon and hub in HUBS:
        if not _is_repo_id(repo_id):
            raise CheckpointError(f"model {text}: expected {hub}:ORG/NAME")
        return _from_hub(hub, repo_id, allow_patterns)
    path = Path(text).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise CheckpointError(f"model directory {path} has no config.json: expected a checkpoint directory")
        return path
    if path.exists():
        raise CheckpointError(f"model {path} is a file: expected a checkpoint directory or a hub id")
    if not _is_repo_id(text):
        raise CheckpointError(f"model directory {path} does not exist")
    return _from_hub(default_hub(), text, allow_patterns)


def default_hub() -> str:
    """The hub a bare ORG/NAME id comes from: VOXPORT_HUB, else the Hugging Face hub."""
    hub = os.environ.get(HUB_VARIABLE) or DEFAULT_HUB
    if hub not in HUBS:
        raise CheckpointError(f"{HUB_VARIABLE}={hub}: expected {' or '.join(HUBS)}")
    return hub


def _from_hub(hub: str, repo_id: str, allow_patterns: list[str] | None) -> Path:
    return _from_modelscope(repo_id, allow_patterns) if hub == "modelscope" else _download(repo_id, allow_patterns)


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


def _from_modelscope(repo_id: str, allow_patterns: list[str] | None) -> Path:
    """A ModelScope snapshot through the modelscope package: its cache first when offline or unreachable."""
    try:
        from modelscope.hub.errors import (
            AuthenticationError,
            CacheNotFound,
            HubError,
            NetworkError,
            NotExistError,
            PermissionDeniedError,
        )
        from modelscope.hub.snapshot_download import snapshot_download as modelscope_download
    except ImportError:
        raise CheckpointError(
            f"modelscope:{repo_id} needs the modelscope package: pip install 'voxport[modelscope]'"
        ) from None
    how_to_get = (
        f"download it where ModelScope is reachable (`modelscope download --model {repo_id}`), then point "
        f"MODELSCOPE_CACHE at that cache or pass --model DIR"
    )

    def cached() -> Path:
        return Path(modelscope_download(repo_id, allow_patterns=allow_patterns, local_files_only=True))

    try:
        if constants.HF_HUB_OFFLINE:
            return cached()
        try:
            return Path(modelscope_download(repo_id, allow_patterns=allow_patterns))
        except NetworkError:
            return cached()
    except CacheNotFound:
        where = "offline mode is on (HF_HUB_OFFLINE=1)" if constants.HF_HUB_OFFLINE else "ModelScope is unreachable"
        raise CheckpointError(
            f"{repo_id} is not in the ModelScope cache ({_modelscope_cache()}) and {where}: {how_to_get}"
        ) from None
    except NotExistError:
        raise CheckpointError(
            f"ModelScope repository {repo_id} not found (a private one needs MODELSCOPE_API_TOKEN)"
        ) from None
    except (AuthenticationError, PermissionDeniedError):
        raise CheckpointError(
            f"{repo_id} on ModelScope needs access: log in (`modelscope login`) or set MODELSCOPE_API_TOKEN"
        ) from None
    except (HubError, OSError) as error:
        raise CheckpointError(f"cannot fetch {repo_id} from ModelScope ({first_line(error)}): {how_to_get}") from None


def _modelscope_cache() -> str:
    from modelscope_hub.config import get_default_config

    return str(get_default_config().cache_dir)
