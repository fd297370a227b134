"""ModelScope sources: `modelscope:ORG/NAME` and VOXPORT_HUB=modelscope, from caches laid out as the modelscope
package lays them (modelscope-hub's DownloadManager: `$MODELSCOPE_CACHE/models/ORG--NAME/snapshots/master`, and
the layout of modelscope <= 1.37 it still reads, `$MODELSCOPE_CACHE/hub/models/ORG/NAME` with dots as ___).
Never the network: every run is offline (HF_HUB_OFFLINE=1, which keeps ModelScope to its cache too)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from voxport.errors import CheckpointError
from voxport.runtime.checkpoints import resolve_checkpoint

pytest.importorskip("modelscope", reason="the modelscope extra is not installed (pip install 'voxport[modelscope]')")


def put_in_modelscope_cache(checkpoint: Path, cache: Path, repo_id: str, legacy: bool = False) -> Path:
    """Lay `checkpoint` out the way the modelscope package caches a downloaded snapshot."""
    owner, name = repo_id.split("/")
    snapshot = (
        cache / "hub" / "models" / owner / name.replace(".", "___")
        if legacy
        else cache / "models" / f"{owner}--{name}" / "snapshots" / "master"
    )
    shutil.copytree(checkpoint, snapshot)
    return snapshot


@pytest.fixture
def modelscope_cache(tmp_path, monkeypatch) -> Path:
    """MODELSCOPE_CACHE pointed at an empty folder, read afresh by modelscope (it keeps one config a process)."""
    from modelscope_hub.config import set_default_config

    cache = tmp_path / "modelscope"
    cache.mkdir()
    monkeypatch.setenv("MODELSCOPE_CACHE", str(cache))
    set_default_config(None)
    yield cache
    set_default_config(None)


@pytest.mark.parametrize("legacy", [False, True], ids=["modelscope-hub layout", "modelscope<=1.37 layout"])
def test_a_modelscope_id_resolves_from_its_cache(tiny_csm_dir, modelscope_cache, legacy):
    snapshot = put_in_modelscope_cache(tiny_csm_dir, modelscope_cache, "someone/tiny-csm.v1", legacy)
    assert resolve_checkpoint("modelscope:someone/tiny-csm.v1").resolve() == snapshot.resolve()


def test_voxport_hub_makes_modelscope_the_default(tiny_csm_dir, modelscope_cache, monkeypatch):
    snapshot = put_in_modelscope_cache(tiny_csm_dir, modelscope_cache, "someone/tiny-csm")
    monkeypatch.setenv("VOXPORT_HUB", "modelscope")
    assert resolve_checkpoint("someone/tiny-csm").resolve() == snapshot.resolve()
    with pytest.raises(CheckpointError, match="not in the Hugging Face cache"):
        resolve_checkpoint("huggingface:someone/tiny-csm")  # the prefix picks the hub for one id
    monkeypatch.setenv("VOXPORT_HUB", "gitee")
    with pytest.raises(CheckpointError, match="VOXPORT_HUB=gitee: expected huggingface or modelscope"):
        resolve_checkpoint("someone/tiny-csm")


def test_a_modelscope_id_not_cached_says_how_to_get_it(modelscope_cache):
    with pytest.raises(CheckpointError) as caught:
        resolve_checkpoint("modelscope:sesameAILabs/csm-1b")
    message = str(caught.value)
    assert "not in the ModelScope cache" in message and str(modelscope_cache) in message
    assert "HF_HUB_OFFLINE=1" in message and "modelscope download --model sesameAILabs/csm-1b" in message
    assert "\n" not in message


def test_a_malformed_modelscope_id_is_one_clear_error():
    with pytest.raises(CheckpointError, match="expected modelscope:ORG/NAME"):
        resolve_checkpoint("modelscope:csm-1b")


def test_without_the_modelscope_package_one_clear_error(monkeypatch):
    for name in [name for name in sys.modules if name.split(".")[0] == "modelscope"] or ["modelscope"]:
        monkeypatch.setitem(sys.modules, name, None)  # importing it now fails, as when it is not installed
    with pytest.raises(CheckpointError, match=r"needs the modelscope package: pip install 'voxport\[modelscope\]'"):
        resolve_checkpoint("modelscope:sesameAILabs/csm-1b")


def test_tts_loads_a_modelscope_model_from_the_filled_cache_offline(tiny_csm_dir, tmp_path):
    cache = tmp_path / "modelscope"
    put_in_modelscope_cache(tiny_csm_dir, cache, "sesameAILabs/csm-1b")
    output = tmp_path / "hi.wav"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "voxport",
            "tts",
            "Hi.",
            "--model",
            "modelscope:sesameAILabs/csm-1b",
            "-o",
            str(output),
            "--max-tokens",
            "2",
            "--json",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "MODELSCOPE_CACHE": str(cache)},
        timeout=600,
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["frames"] == 2 and output.is_file()
