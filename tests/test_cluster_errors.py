"""Joining a Ray cluster that refuses us is one clear line that says what to check."""

from types import SimpleNamespace

import pytest

from voxport.batch import cluster
from voxport.errors import VoxportError


def refusing_ray(*args, **kwargs):
    raise ConnectionError("Failed to connect to Ray cluster at 192.0.2.2:6390\nmore detail")


@pytest.fixture
def ray_that_refuses(monkeypatch):
    monkeypatch.setattr(cluster, "require_ray", lambda: SimpleNamespace(init=refusing_ray))
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)


def test_a_refused_cluster_names_itself_and_token_authentication(ray_that_refuses):
    with pytest.raises(VoxportError) as refused:
        cluster.start("127.0.0.1:6390")
    message = str(refused.value)
    assert message.startswith("cannot start or reach cluster 127.0.0.1:6390: Failed to connect")
    assert "RAY_AUTH_MODE=token" in message and "\n" not in message


def test_no_token_hint_once_the_mode_is_set_or_for_a_local_runtime(ray_that_refuses, monkeypatch):
    with pytest.raises(VoxportError, match="a local Ray runtime") as local:
        cluster.start(None)
    assert "RAY_AUTH_MODE" not in str(local.value)
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    with pytest.raises(VoxportError) as refused:
        cluster.start("127.0.0.1:6390")
    assert "RAY_AUTH_MODE" not in str(refused.value)
