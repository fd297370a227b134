import shutil

import pytest
from huggingface_hub import constants

from voxport.errors import CheckpointError
from voxport.runtime.checkpoints import require_tokenizer_files, resolve_checkpoint


def put_in_hub_cache(checkpoint, cache, repo_id):
    """Lay `checkpoint` out the way huggingface_hub caches a downloaded snapshot."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    revision = "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(checkpoint, repo / "snapshots" / revision)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    return repo / "snapshots" / revision


def test_local_directory(tiny_csm_dir):
    assert resolve_checkpoint(tiny_csm_dir) == tiny_csm_dir
    assert resolve_checkpoint(str(tiny_csm_dir)) == tiny_csm_dir


def test_directory_without_config(tmp_path):
    with pytest.raises(CheckpointError, match="has no config.json"):
        resolve_checkpoint(tmp_path)


@pytest.mark.parametrize("source", ["./no-such-dir", "/no/such/dir", "a/b/c"])
def test_missing_directory(source):
    with pytest.raises(CheckpointError, match="does not exist"):
        resolve_checkpoint(source)


def test_file_is_not_a_checkpoint(tiny_csm_dir):
    with pytest.raises(CheckpointError, match="is a file"):
        resolve_checkpoint(tiny_csm_dir / "config.json")


def test_offline_hub_id_not_cached_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(CheckpointError) as caught:
        resolve_checkpoint("sesame/csm-1b")
    message = str(caught.value)
    assert "not in the Hugging Face cache" in message and "HF_HUB_OFFLINE=1" in message
    assert "hf download sesame/csm-1b" in message and "\n" not in message


def test_offline_hub_id_from_cache(tiny_csm_dir, tmp_path, monkeypatch):
    snapshot = put_in_hub_cache(tiny_csm_dir, tmp_path, "someone/tiny-csm")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    assert resolve_checkpoint("someone/tiny-csm").resolve() == snapshot.resolve()


QWEN2_TOKENIZER = (("tokenizer.json",), ("vocab.json", "merges.txt"))


def test_a_tokenizer_in_either_layout_is_found(tmp_path):
    (tmp_path / "tokenizer.json").write_text("{}")
    require_tokenizer_files(tmp_path, QWEN2_TOKENIZER)
    (tmp_path / "tokenizer.json").unlink()
    (tmp_path / "vocab.json").write_text("{}")
    with pytest.raises(CheckpointError, match="has no tokenizer: expected tokenizer.json or vocab.json with merges"):
        require_tokenizer_files(tmp_path, QWEN2_TOKENIZER)
    (tmp_path / "merges.txt").write_text("")
    require_tokenizer_files(tmp_path, QWEN2_TOKENIZER)
