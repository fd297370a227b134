"""The two WebSockets through `voxport serve --replicas 2`: the single-process server's own socket tests (imported
below) run against the replicas' entry, which carries each socket to one replica for its life. The tests here
cover what replicas add: sockets answered by both replicas, and a replica killed mid-socket."""

import json
import os
import signal
import time

import pytest
from websockets.exceptions import ConnectionClosed

from serving import Server
from test_serve_realtime import (  # noqa: F401  (the realtime tests, run here against the replicas)
    KEY,
    client,
    test_a_cancelled_reply_stops_and_the_session_goes_on,
    test_a_closed_socket_cancels_its_reply,
    test_g711_both_ways_and_text_replies,
    test_mistakes_are_error_events_and_the_session_goes_on,
    test_server_vad_commits_each_turn_and_answers_it,
    test_the_key_is_checked_before_the_session_opens,
    test_two_manual_turns_keep_the_conversation_in_the_cache,
    turns,
    voiced_turns,
)
from test_serve_speech_socket import (  # noqa: F401  (the speech socket tests, run here against the replicas)
    PARAGRAPH,
    SETTINGS,
    open_socket,
    receive,
    test_a_client_that_leaves_cancels_its_job,
    test_first_audio_comes_before_the_text_is_finished,
    test_flush_speaks_a_partial_clause_now,
    test_mistakes_in_messages_are_told_and_the_socket_goes_on,
    test_streamed_words_give_the_whole_texts_audio,
    test_the_elevenlabs_key_header_and_a_speaker_id_voice,
    test_wrong_keys_and_settings_close_the_socket,
)
from voxport.serve.replicas import REPLICA_HEADER

# Left out: the realtime test of a reply queued behind another session's (with two replicas the second
# session is served by the idle one, so nothing queues).


@pytest.fixture(scope="module")
def server(tiny_csm_dir, tiny_covo_dir):
    pytest.importorskip("ray.serve", reason="Ray Serve is not installed (pip install 'voxport[serve]')")
    process = Server(
        "--model",
        f"tts={tiny_csm_dir}",
        "--model",
        f"chat={tiny_covo_dir}",
        "--replicas",
        "2",
        "--api-key",
        KEY,
        "--max-input-chars",
        "600",
        "--max-audio-mb",
        "0.5",
    )
    process.headers = {"Authorization": f"Bearer {KEY}"}
    yield process
    process.stop()


def answering_replica(server) -> str:
    """Which replica serves a new speech socket (its node:pid, from the handshake's answer)."""
    with open_socket(server) as socket:
        assert socket.response is not None
        return socket.response.headers[REPLICA_HEADER]


def test_sockets_are_served_by_both_replicas(server):
    seen, deadline = set(), time.monotonic() + 120
    while len(seen) < 2:
        assert time.monotonic() < deadline, f"every socket went to {seen}"
        seen.add(answering_replica(server))


def test_a_replica_killed_mid_socket_closes_it_and_the_next_socket_is_served(server):
    with open_socket(server, "model_id=tts&seed=1&max_seconds=5") as socket:
        socket.send(json.dumps({"text": PARAGRAPH + " "}))
        socket.send(json.dumps({"text": ""}))
        assert "audio" in receive(socket)
        assert socket.response is not None
        os.kill(int(socket.response.headers[REPLICA_HEADER].rsplit(":", 1)[1]), signal.SIGKILL)
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                socket.recv(timeout=120)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011
    with open_socket(server, SETTINGS) as socket:  # the other replica answers while Ray Serve replaces this one
        socket.send(json.dumps({"text": "Still served. "}))
        socket.send(json.dumps({"text": ""}))
        assert "audio" in receive(socket)
