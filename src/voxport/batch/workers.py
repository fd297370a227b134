"""Model-holding workers: each loads its model once on its own device, then turns batches of rows into files
and manifest records. Ray Data runs one per device (an actor pool); they know nothing of Ray themselves.

A row that fails becomes an error record with a one-line reason; the other rows of its batch go on. Every
record goes to the job's journal (journal.py) as soon as its row is done, so a finished row stays finished
whatever becomes of its batch; a row whose worker died under it is run alone after, a bounded number of times.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING

from voxport.batch.journal import Journal
from voxport.batch.manifest import error_record
from voxport.errors import VoxportError, first_line

if TYPE_CHECKING:
    from voxport.services.speech import SpeechPlan


class RowWorker:
    """Loads the model on the device Ray gave this process; `__call__` takes and gives Ray Data batches."""

    def __init__(
        self,
        model: str,
        kind: str,
        dtype: str,
        output_dir: str,
        options: dict,
        max_retries: int,
        threads: int | None = None,
    ):
        import torch

        from voxport.runtime.devices import resolve_device, resolve_dtype

        if threads:  # a CPU worker's share of the cores (Ray would give it one thread)
            torch.set_num_threads(threads)
        self.output_dir = Path(output_dir)
        self.options = options
        self.journal, self.max_retries = Journal(output_dir), max_retries
        self.name = f"{socket.gethostname()}/{os.getpid()} {kind}"
        # A model that cannot load is reported with the first batch: Ray retries failed constructors forever.
        self.failure: VoxportError | None = None
        try:
            device = resolve_device(kind)  # Ray makes the device it granted the first one this process sees
            self.name = f"{socket.gethostname()}/{os.getpid()} {device}"
            self.model = self.load(model, device, resolve_dtype(dtype, device))
        except VoxportError as error:
            self.failure = error

    def __call__(self, batch: dict) -> dict:
        if self.failure is not None:
            raise self.failure
        records, fresh, suspects = [], [], []
        for row in (json.loads(text) for text in batch["row"]):
            if (done := self.journal.done(row["id"])) is not None:
                records.append(done)  # finished before its worker died and Ray ran the batch again
            elif (deaths := self.journal.deaths(row["id"])) is None:
                fresh.append(row)
            elif deaths > self.max_retries:
                records += self.kept([self.journal.given_up(row["id"], deaths, self.max_retries)])
            else:
                suspects.append(row)
        # Rows begun before and not finished run alone: a row that kills its worker takes no other row with it.
        for group in ([fresh] if fresh else []) + [[row] for row in suspects]:
            self.journal.begin([row["id"] for row in group])
            records += self.run(group)
        return {"record": [json.dumps(record) for record in records]}

    def kept(self, records: list[dict]) -> list[dict]:
        """`records` signed by this worker, each in the journal once its row's files are written."""
        signed = [{**record, "worker": self.name} for record in records]
        for record in signed:
            self.journal.finished(record)
        return signed

    def load(self, model: str, device, dtype):
        raise NotImplementedError

    def run(self, rows: list[dict]) -> list[dict]:
        raise NotImplementedError

    def path(self, row: dict, suffix: str) -> Path:
        return self.output_dir / f"{row['id']}{suffix}"


class SpeechWorker(RowWorker):
    """Text to speech through the speech service: every row spoken whole, as `voxport tts` speaks it; rows
    that can share an engine batch run together."""

    def load(self, model: str, device, dtype):
        from voxport.services.speech import SpeechService

        aligner = self.options.get("aligner")
        return SpeechService.load(model, device, dtype, aligner)

    def run(self, rows: list[dict]) -> list[dict]:
        records, planned = [], []
        for row in rows:
            try:
                planned.append((row, self.model.plan(self.request(row))))
            except VoxportError as error:
                records += self.kept([error_record(row["id"], str(error))])
        return records + self.kept(self.speak(planned))

    def request(self, row: dict):
        from voxport.services.speech import SpeechRequest

        voice = tuple(
            self.model.sample(turn["audio"], turn["text"], turn["speaker"]) for turn in row.get("context", ())
        )
        return SpeechRequest(
            text=row["text"],
            speaker=row.get("speaker"),
            voice=voice,
            seed=row["seed"],
            max_steps=row.get("max_tokens"),
            temperature=self.options.get("temperature"),
            top_k=self.options.get("top_k"),
            greedy=self.options.get("greedy", False),
            normalize=row.get("normalize", True),
            ssml=row.get("ssml"),
            timestamps=row.get("timestamps", self.options.get("timestamps", False)),
        )

    def speak(self, planned: list[tuple[dict, SpeechPlan]]) -> list[dict]:
        """The rows as one batch; when that fails, each row alone, so only the bad row is lost."""
        if not planned:
            return []
        try:
            return self.synthesize(planned)
        except Exception as error:
            if len(planned) == 1:
                return [error_record(planned[0][0]["id"], _one_line(error))]
        records = []
        for member in planned:
            records += self.speak([member])
        return records

    def synthesize(self, planned: list[tuple[dict, SpeechPlan]]) -> list[dict]:
        from voxport.audio.io import write_audio
        from voxport.runtime.files import replaced_atomically
        from voxport.services.speech import timestamps_record

        start = time.perf_counter()
        results = self.model.speak_plans([plan for _, plan in planned])
        for (row, plan), result in zip(planned, results):
            write_audio(self.path(row, ".wav"), result.audio, result.sample_rate)
            if result.words is not None:  # the row asked for word timings: <id>.json beside its audio
                with replaced_atomically(self.path(row, ".json")) as temporary:
                    record = timestamps_record(plan, result.chunk_times, result.words)
                    temporary.write_text(json.dumps(record, ensure_ascii=False), encoding="utf-8")
        seconds = (time.perf_counter() - start) / len(planned)
        return [
            {
                "id": row["id"],
                "status": "ok",
                "output": f"{row['id']}.wav",
                "frames": result.steps,
                "timestamps": f"{row['id']}.json" if result.words is not None else None,
                "audio_seconds": result.audio_seconds,
                "seconds": seconds,
                "seed": result.seed,
            }
            for (row, _), result in zip(planned, results)
        ]


class ChatWorker(RowWorker):
    """One clip a row through the chat service: the reply's text (DIR/<id>.txt), and in a2ta its speech
    (DIR/<id>.wav)."""

    def load(self, model: str, device, dtype):
        from voxport.services.chat import ChatService

        service = ChatService.load(model, device, dtype)
        if self.options["mode"] == "a2ta":
            error = service.prepare_speech()
            if error:
                raise VoxportError(f"mode a2ta: {error}")
        return service

    def run(self, rows: list[dict]) -> list[dict]:
        records = []
        for row in rows:
            try:
                record = self.answer(row)
            except Exception as error:
                record = error_record(row["id"], _one_line(error))
            records += self.kept([record])
        return records

    def answer(self, row: dict) -> dict:
        from voxport.audio.io import write_audio
        from voxport.models.base import ChatSettings
        from voxport.runtime.files import replaced_atomically
        from voxport.services.chat import ChatRequest

        start = time.perf_counter()
        settings = ChatSettings(
            mode=self.options["mode"],
            max_new_tokens=row.get("max_tokens"),
            seed=row["seed"],
            temperature=self.options.get("temperature"),
            top_k=self.options.get("top_k"),
            greedy=self.options.get("greedy", False),
        )
        turn = self.model.answer(ChatRequest(self.model.clip(row["audio"]), settings))
        record = {
            "id": row["id"],
            "status": "ok",
            "reply": turn.text,
            "reply_file": f"{row['id']}.txt",
            "tokens": len(turn.text_token_ids) + len(turn.audio_codes),
            "audio_seconds": 0.0,
            "seed": row["seed"],
        }
        if turn.speech is not None:
            rate = self.model.speech_rate
            write_audio(self.path(row, ".wav"), turn.speech, rate)
            record |= {"output": f"{row['id']}.wav", "audio_seconds": len(turn.speech) / rate}
        with replaced_atomically(self.path(row, ".txt")) as temporary:
            temporary.write_text(turn.text + "\n", encoding="utf-8")
        return record | {"seconds": time.perf_counter() - start}


def _one_line(error: BaseException) -> str:
    """A row's failure as one line: a voxport error's message, anything else with its type."""
    if isinstance(error, VoxportError) or not str(error).strip():
        return first_line(error)
    return f"{type(error).__name__}: {first_line(error)}"
