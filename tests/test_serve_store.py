"""The custom voices store under attack, over real HTTP against real `voxport serve` processes: a consent deleted
while a voice that uses it is made, temporaries of killed writes, a read-only and a full voices directory, a
sample file gone, uploads too large to take (refused as they stream in) and transcripts too long to use."""

import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
import soundfile as sf

from serving import Server
from voxport.serve.voices import MAX_TRANSCRIPT_CHARS, MAX_UPLOAD_BYTES, ORPHAN_SECONDS


def wav_bytes(seconds: float, rate: int = 24000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    buffer = io.BytesIO()
    sf.write(buffer, (0.3 * np.sin(2 * np.pi * (180 + 40 * t) * t)).astype(np.float32), rate, format="WAV")
    return buffer.getvalue()


SAMPLE = wav_bytes(0.5)


def add_consent(base: str, recording: bytes = SAMPLE) -> httpx.Response:
    return httpx.post(
        f"{base}/v1/audio/voice_consents",
        data={"name": "Ada", "language": "en"},
        files={"recording": ("consent.wav", recording, "audio/wav")},
        timeout=120,
    )


def add_voice(base: str, consent: str, sample: bytes = SAMPLE, transcript: str = "A short line.") -> httpx.Response:
    return httpx.post(
        f"{base}/v1/audio/voices",
        data={"name": "Ada", "consent": consent, "transcript": transcript},
        files={"audio_sample": ("sample.wav", sample, "audio/wav")},
        timeout=120,
    )


def assert_storage_error(reply: httpx.Response, status: int, *hidden: str) -> None:
    """An OpenAI-shaped server error that names no path."""
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert error["type"] == "server_error" and set(error) == {"message", "type", "param", "code"}
    for text in hidden:
        assert text not in error["message"], error


def dead_pid() -> int:
    """The id of a process that has ended (as a killed writer's has)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def killed_mid_write(target) -> None:
    """A process that opens a temporary for `target` through voxport's own writer and is SIGKILLed before it
    renames it: what a kill -9 during an upload leaves."""
    script = (
        "import os, signal, sys\nfrom voxport.runtime.files import replaced_atomically\n"
        "with replaced_atomically(sys.argv[1]) as temporary:\n"
        "    temporary.write_bytes(b'x' * 2**20)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    result = subprocess.run([sys.executable, "-c", script, str(target)], check=False)
    assert result.returncode == -signal.SIGKILL


def namespaced(*commands: str) -> tuple[str, ...]:
    """A prefix that runs the server in its own mount namespace after `commands` (mounts of "$0"), or a skip
    where this machine gives none."""
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip(
            f"needs a user and mount namespace (unshare -rm) for a real read-only or full directory: "
            f"{probe.stderr.decode().strip()}"
        )
    return ("unshare", "-rm", "sh", "-c", " && ".join([*commands, 'exec "$@"']))


@pytest.fixture(scope="module")
def store(tiny_csm_dir, tmp_path_factory):
    directory = tmp_path_factory.mktemp("store")
    server = Server("--model", f"tts={tiny_csm_dir}", "--voices-dir", str(directory))
    yield server.base, directory
    server.stop()


def test_a_consent_deleted_while_a_voice_is_made_from_it_never_leaves_a_voice_without_consent(store):
    base, _ = store
    sample = wav_bytes(20.0, 48000)  # long enough to take a while to read
    outcomes = []
    for _ in range(15):
        consent = add_consent(base).json()["id"]
        replies = {}

        def make(consent=consent, replies=replies):
            replies["voice"] = add_voice(base, consent, sample)

        def delete(consent=consent, replies=replies):
            replies["delete"] = httpx.delete(f"{base}/v1/audio/voice_consents/{consent}", timeout=120)

        threads = [threading.Thread(target=make), threading.Thread(target=delete)]
        for thread in threads:
            thread.start()
            time.sleep(0.01)
        for thread in threads:
            thread.join()
        made, deleted = replies["voice"].status_code == 200, replies["delete"].status_code == 200
        outcomes.append((made, deleted))
        assert made != deleted, (replies["voice"].text, replies["delete"].text)  # exactly one of them won
        if made:
            assert "is used by" in replies["delete"].json()["error"]["message"]
            assert httpx.get(f"{base}/v1/audio/voice_consents/{consent}").status_code == 200
            assert httpx.delete(f"{base}/v1/audio/voices/{replies['voice'].json()['id']}").status_code == 200
        else:
            assert "does not exist" in replies["voice"].json()["error"]["message"]
    voices = httpx.get(f"{base}/v1/audio/voices").json()["voices"]
    consents = {consent["id"] for consent in httpx.get(f"{base}/v1/audio/voice_consents?limit=100").json()["data"]}
    assert all(voice["consent"] in consents for voice in voices if voice["type"] == "audio_sample")


def test_temporaries_of_killed_writes_are_swept_and_never_read_as_records(tiny_csm_dir, tmp_path):
    directory = tmp_path / "voices"
    first = Server("--model", f"tts={tiny_csm_dir}", "--voices-dir", str(directory))
    try:
        consent = add_consent(first.base).json()["id"]
    finally:
        first.stop()
    consents = directory / "consents"
    killed_mid_write(consents / f"{consent}.audio")  # an upload killed while its recording was written
    stale_record = consents / f".cons_{uuid.uuid4().hex}.json.voxport-{dead_pid()}-k1ll3d.json"
    stale_record.write_bytes(b"")  # a kill between creating the temporary and writing it
    live_record = directory / "voices" / f".voice_{uuid.uuid4().hex}.json.voxport-{os.getpid()}-wr1t3.json"
    live_record.write_bytes(b"")  # a live process's write in progress: kept, and not a voice
    orphan = consents / f"cons_{uuid.uuid4().hex}.audio"  # killed after the recording's rename, before its record
    orphan.write_bytes(b"x" * 2**20)
    os.utime(orphan, (time.time() - ORPHAN_SECONDS - 1,) * 2)
    fresh_orphan = consents / f"cons_{uuid.uuid4().hex}.audio"  # as old as another server's write in progress
    fresh_orphan.write_bytes(b"x")
    assert len(list(consents.glob(".*.voxport-*"))) == 2

    server = Server("--model", f"tts={tiny_csm_dir}", "--voices-dir", str(directory))
    try:
        assert not list(consents.glob(".*.voxport-*")) and live_record.exists()
        assert not orphan.exists() and fresh_orphan.exists()
        listed = httpx.get(f"{server.base}/v1/audio/voice_consents").json()["data"]
        assert [item["id"] for item in listed] == [consent]
        assert [
            voice
            for voice in httpx.get(f"{server.base}/v1/audio/voices").json()["voices"]
            if voice["type"] == "audio_sample"
        ] == []
        killed_mid_write(consents / f"{consent}.audio")  # while it runs: swept before its next write
        assert add_consent(server.base).status_code == 200
        assert not list(consents.glob(".*.voxport-*"))
    finally:
        server.stop()


def test_a_read_only_voices_directory_serves_its_voices_and_refuses_writes_without_a_path(tiny_csm_dir, tmp_path):
    directory = tmp_path / "voices"
    first = Server("--model", f"tts={tiny_csm_dir}", "--voices-dir", str(directory))
    try:
        consent = add_consent(first.base).json()["id"]
        voice = add_voice(first.base, consent).json()["id"]
    finally:
        first.stop()
    server = Server(
        "--model",
        f"tts={tiny_csm_dir}",
        "--voices-dir",
        str(directory),
        prefix=(*namespaced('mount --bind -o ro "$0" "$0"'), str(directory)),
    )
    try:
        speech = httpx.post(
            f"{server.base}/v1/audio/speech",
            timeout=120,
            json={"model": "tts", "input": "Read only.", "voice": {"id": voice}, "max_seconds": 0.16, "seed": 1},
        )
        assert speech.status_code == 200, speech.text
        assert_storage_error(add_consent(server.base), 503, str(tmp_path), "consents/", ".audio")
        assert "Read-only file system" in add_consent(server.base).json()["error"]["message"]
        assert_storage_error(add_voice(server.base, consent), 503, str(tmp_path), "voices/")
        assert_storage_error(httpx.delete(f"{server.base}/v1/audio/voices/{voice}"), 503, str(tmp_path))
        assert_storage_error(
            httpx.post(f"{server.base}/v1/audio/voice_consents/{consent}", json={"name": "B"}), 503, str(tmp_path)
        )
        ids = [item["id"] for item in httpx.get(f"{server.base}/v1/audio/voices").json()["voices"]]
        assert voice in ids  # a failed delete deletes nothing
    finally:
        server.stop()


def test_a_full_voices_directory_is_507_without_a_path_and_leaves_nothing_behind(tiny_csm_dir, tmp_path):
    directory = tmp_path / "voices"
    directory.mkdir()
    server = Server(
        "--model",
        f"tts={tiny_csm_dir}",
        "--voices-dir",
        str(directory),
        prefix=(*namespaced('mount -t tmpfs -o size=128k voxport "$0"'), str(directory)),
    )
    try:
        root = f"/proc/{server.process.pid}/root{directory}"  # the server's own view of its tmpfs
        consent = add_consent(server.base)
        assert consent.status_code == 200, consent.text
        assert_storage_error(add_consent(server.base, wav_bytes(5.0)), 507, str(tmp_path), "voxport-")
        too_big = add_voice(server.base, consent.json()["id"], wav_bytes(3.0))
        assert_storage_error(too_big, 507, str(tmp_path), "voxport-")
        assert too_big.json()["error"]["code"] == "insufficient_storage"
        if os.path.isdir(root):
            kept = sorted(path.name for path in Path(root).rglob("*") if path.is_file())
            assert kept == sorted(f"{consent.json()['id']}{suffix}" for suffix in (".json", ".audio"))
        assert add_consent(server.base).status_code == 200  # the failed writes took no room
    finally:
        server.stop()


def test_a_voice_whose_sample_went_missing_is_503_without_a_path(store):
    base, directory = store
    consent = add_consent(base).json()["id"]
    voice = add_voice(base, consent).json()["id"]
    (directory / "voices" / f"{voice}.wav").unlink()
    reply = httpx.post(
        f"{base}/v1/audio/speech",
        timeout=120,
        json={"model": "tts", "input": "Gone.", "voice": {"id": voice}, "max_seconds": 0.16},
    )
    assert_storage_error(reply, 503, str(directory), ".wav")
    assert reply.json()["error"]["param"] == "voice"
    assert httpx.get(f"{base}/health").status_code == 200


def multipart_head(boundary: str) -> bytes:
    return (
        f'--{boundary}\r\nContent-Disposition: form-data; name="name"\r\n\r\nAda\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="language"\r\n\r\nen\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="recording"; filename="big.wav"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
    ).encode()


def upload_until_answered(base: str, headers: str, pieces) -> tuple[str, int]:
    """Send a consent upload piece by piece until the server answers; its status line and the bytes sent."""
    address = urlsplit(base)
    with socket.create_connection((address.hostname, address.port), timeout=30) as connection:
        connection.sendall(f"POST /v1/audio/voice_consents HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode())
        sent = 0
        for piece in pieces:
            connection.setblocking(False)
            try:
                answer = connection.recv(4096)
            except BlockingIOError:
                answer = b""
            connection.setblocking(True)
            if answer:
                return answer.decode(errors="replace").splitlines()[0], sent
            try:
                connection.sendall(piece)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(piece)
        connection.settimeout(15)
        try:
            answer = connection.recv(4096)
        except (TimeoutError, ConnectionResetError):
            answer = b""
        return (answer.decode(errors="replace").splitlines() or ["no answer"])[0], sent


def test_an_upload_too_large_is_refused_as_it_streams_in(store):
    base, _ = store
    boundary = "voxportboundary"
    megabyte = b"\0" * 2**20
    declared = 400 * 2**20
    status, sent = upload_until_answered(
        base,
        f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {declared}\r\n",
        [multipart_head(boundary), megabyte],
    )
    assert status == "HTTP/1.1 413 Request Entity Too Large" and sent <= 2 * 2**20  # refused by its declared size

    def chunked():
        yield b"%x\r\n%s\r\n" % (len(multipart_head(boundary)), multipart_head(boundary))
        for _ in range(60):
            yield b"%x\r\n%s\r\n" % (len(megabyte), megabyte)
            time.sleep(0.02)

    status, sent = upload_until_answered(
        base, f"Content-Type: multipart/form-data; boundary={boundary}\r\nTransfer-Encoding: chunked\r\n", chunked()
    )
    assert status == "HTTP/1.1 413 Request Entity Too Large" and sent < MAX_UPLOAD_BYTES + 8 * 2**20, sent
    assert httpx.get(f"{base}/health").status_code == 200


def test_a_transcript_too_long_to_use_is_refused(store):
    base, _ = store
    consent = add_consent(base).json()["id"]
    reply = add_voice(base, consent, transcript="word " * 20000)
    assert reply.status_code == 400 and reply.json()["error"]["param"] == "transcript"
    assert f"the limit is {MAX_TRANSCRIPT_CHARS}" in reply.json()["error"]["message"]
    assert add_voice(base, consent, transcript="w" * MAX_TRANSCRIPT_CHARS).status_code == 200


def test_an_unknown_voice_lists_a_bounded_number_of_custom_voices(store):
    base, _ = store
    consent = add_consent(base).json()["id"]
    for _ in range(12):
        assert add_voice(base, consent).status_code == 200
    reply = httpx.post(f"{base}/v1/audio/speech", json={"model": "tts", "input": "Hi.", "voice": {"id": "voice_no"}})
    message = reply.json()["error"]["message"]
    assert reply.status_code == 400 and message.count("voice_") <= 11 and "more (GET /v1/audio/voices)" in message
