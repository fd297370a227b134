"""voxport batch tts | chat: a whole dataset through a model on Ray, one worker per device, resumable."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from voxport.batch.journal import MAX_RETRIES
from voxport.cli.common import add_dtype_option, add_sampling_options, non_negative_int, positive_int
from voxport.models.registry import default_source
from voxport.runtime.kinds import DEVICE_KINDS

INPUTS = "JSON Lines (.jsonl), CSV, Parquet or plain text (.txt, one line a row)"


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "batch",
        help="speak or answer a whole dataset on Ray (local runtime, or --cluster)",
        description="Run every row of a dataset through a model with one model-holding Ray worker per device. "
        "Writes DIR/<id>.wav (and DIR/<id>.txt for chat) and DIR/manifest.parquet, one record a "
        "row: status ok or error with its reason. A rerun skips rows already done. Exits 1 when "
        "any row failed.",
    )
    kinds = parser.add_subparsers(title="jobs", required=True, metavar="JOB")
    tts = _job_parser(
        kinds, "tts", default_source("speaks_text"), "text", "speak every row's text, whole, as `voxport tts` speaks it"
    )
    tts.add_argument(
        "--speaker", type=non_negative_int, help="speaker id for rows without a speaker column (default: the model's)"
    )
    tts.add_argument(
        "--max-tokens",
        type=positive_int,
        help="most generation steps each chunk of a row's text may take, for rows without max_tokens "
        "(default: enough for slow speech of the chunk's words, as `voxport tts`)",
    )
    tts.add_argument(
        "--timestamps",
        action="store_true",
        help="also write DIR/<id>.json: when each chunk and word of the row's text is heard (rows "
        "may also say so in a timestamps column)",
    )
    tts.add_argument(
        "--aligner",
        metavar="SOURCE",
        help="forced aligner for the timings: local directory or hub id (default: MMS-300M, see docs/text.md)",
    )
    add_sampling_options(tts, "code")
    chat = _job_parser(
        kinds, "chat", default_source("answers_audio"), "audio", "answer every row's audio clip (one round each)"
    )
    chat.add_argument(
        "--mode",
        default="a2t",
        choices=["a2t", "a2ta"],
        help="a2t: reply in text (DIR/<id>.txt); a2ta: text and speech (DIR/<id>.wav too) (default: a2t)",
    )
    chat.add_argument(
        "--max-tokens",
        type=positive_int,
        help="most tokens a reply may have, for rows without max_tokens (default: the model's)",
    )
    add_sampling_options(chat, "token")


def _job_parser(kinds, name: str, default_model: str | None, column: str, help_text: str) -> argparse.ArgumentParser:
    extra = (
        "speaker, seed, max_tokens, context (a list of {speaker, text, audio}: earlier turns whose voice to continue)"
        if name == "tts"
        else "seed, max_tokens"
    )
    parser = kinds.add_parser(
        name,
        help=help_text,
        description=f"{help_text[0].upper()}{help_text[1:]}. INPUT is {INPUTS}. Columns: {column} (required"
        f"{'; paths relative to INPUT' if column == 'audio' else ''}), id (names the output files; "
        f"default: the row number), and optionally {extra}.",
        epilog=f"examples: voxport batch {name} rows.jsonl --model M --output-dir out\n"
        f"          voxport batch {name} rows.jsonl --model M --output-dir out --workers 2\n"
        f"          voxport batch {name} rows.parquet --model M --output-dir out --cluster ray://head:10001",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("input", type=Path, metavar="INPUT", help=INPUTS)
    parser.add_argument(
        "--model",
        default=default_model,
        help="local checkpoint directory or hub id (default: %(default)s); on a cluster, a path every node can read",
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        required=True,
        metavar="DIR",
        help="where the outputs and manifest.parquet go (created if missing)",
    )
    parser.add_argument(
        "--workers",
        type=positive_int,
        help="model-holding workers, one device each (default: one per accelerator of --device, else one)",
    )
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=8,
        help="rows a worker takes at once; tts rows with the same settings share one engine batch (default: 8)",
    )
    parser.add_argument(
        "--cluster",
        metavar="ADDRESS",
        help="a running Ray cluster (e.g. ray://head:10001 or auto); default: start a local "
        "Ray runtime for this command and stop it after",
    )
    parser.add_argument(
        "--device",
        default="auto",
        choices=["auto", *DEVICE_KINDS],
        help="device kind of the workers; auto: the best the Ray runtime has (default: auto)",
    )
    add_dtype_option(parser)
    parser.add_argument(
        "--max-retries",
        type=non_negative_int,
        default=MAX_RETRIES,
        help="runs of a row again after its worker died under it (a segfault, out of memory); "
        f"then it is recorded as an error (default: {MAX_RETRIES})",
    )
    parser.add_argument(
        "--seed",
        type=int,
        help="seed for rows without a seed column (default: one fresh seed for the run, "
        "recorded per row in the manifest)",
    )
    parser.set_defaults(run=lambda args: run(name, args))
    return parser


def run(kind: str, args: argparse.Namespace) -> int:
    from voxport.batch.jobs import BatchJob, run_batch

    defaults = {"max_tokens": args.max_tokens, "seed": args.seed}
    options = {"temperature": args.temperature, "top_k": args.top_k, "greedy": args.greedy}
    if kind == "tts":
        defaults["speaker"] = args.speaker
        aligner = args.aligner and (str(Path(args.aligner).resolve()) if Path(args.aligner).exists() else args.aligner)
        options.update(timestamps=args.timestamps, aligner=aligner)  # a local aligner found from any worker
    else:
        options["mode"] = args.mode
    job = BatchJob(
        kind=kind,
        input=args.input,
        model=args.model,
        output_dir=args.output_dir,
        device=args.device,
        dtype=args.dtype,
        workers=args.workers,
        batch_size=args.batch_size,
        cluster=args.cluster,
        row_defaults=defaults,
        options=options,
        max_retries=args.max_retries,
    )
    with RowProgress() as progress:
        summary = run_batch(job, on_record=progress.record, on_start=progress.start)
    print(_summary(kind, summary))
    return 1 if summary.failed else 0


class RowProgress:
    """A bar over the rows sent to workers (done, failed, rows/s, audio seconds per wall second) on a
    terminal; a line on stderr for every failed row either way."""

    def __enter__(self):
        self.bar, self.failed, self.audio_seconds, self.began = None, 0, 0.0, time.perf_counter()
        return self

    def __exit__(self, *exc_info):
        if self.bar is not None:
            self.bar.close()

    def start(self, rows: int, workers: int, device: str) -> None:
        from tqdm import tqdm

        print(f"voxport: {rows} rows to run on {workers} {device} worker{'s' * (workers != 1)}", file=sys.stderr)
        self.began = time.perf_counter()
        self.bar = tqdm(
            total=rows, unit="row", desc="rows", file=sys.stderr, disable=not sys.stderr.isatty(), leave=False
        )

    def record(self, record: dict) -> None:
        if record["status"] != "ok":
            self.failed += 1
            self._say(f"voxport: row {record['id']} failed: {record['error']}")
        self.audio_seconds += record.get("audio_seconds") or 0.0
        if self.bar is not None:
            wall = max(time.perf_counter() - self.began, 1e-9)
            self.bar.set_postfix(failed=self.failed, audio_s_per_s=f"{self.audio_seconds / wall:.2f}", refresh=False)
            self.bar.update(1)

    def _say(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr)


def _summary(kind: str, summary) -> str:
    seconds = max(summary.seconds, 1e-9)
    on = (
        f" on {len(summary.workers)} {summary.device} worker{'s' * (len(summary.workers) != 1)}"
        if summary.workers
        else ""
    )
    return (
        f"batch {kind}: {summary.rows} rows: {summary.ok} ok, {summary.failed} failed, {summary.skipped} "
        f"already done; {summary.audio_seconds:.2f} s of audio in {summary.seconds:.2f} s "
        f"({summary.processed / seconds:.2f} rows/s, {summary.audio_seconds / seconds:.2f} audio s per s)"
        f"{on}; manifest {summary.manifest}"
    )
