"""Covo's token loop: the static-cache engine next to the former loop (transformers' dynamic cache, a host
read of every token), same LLM, prompt and greedy penalties, interleaved in one process.

Prints per path the prefill seconds and the decode milliseconds per token (medians over repeats: the
loaded-machine noise hits both paths alike), their ratios, and whether the greedy tokens are identical.
Decode per token = (run of N tokens - run of 1 token) / (N - 1): both runs prefill the same prompt.
Each figure comes as wall-clock time and as the process's CPU time: on a CPU shared with other work, the
CPU time of a single-threaded run (--threads 1) measures the work itself, not the waiting for a core.

    python benchmarks/covo_decode.py                           # the tiny checkpoint's LLM
    python benchmarks/covo_decode.py --layers 2 --dtype bfloat16  # Covo's real widths, 2 of its 28 layers
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from transformers import Qwen2ForCausalLM
from transformers.cache_utils import DynamicCache

from covo_load import covo_shaped_config
from voxport.models.covo import CovoAudioChat
from voxport.models.covo.generation import RepetitionPenalties, TokenEngine, TokenRun
from voxport.models.sampling import SamplingSettings, pick_tokens
from voxport.models.tiny import make_tiny_covo
from voxport.runtime.devices import backend_for, resolve_device, resolve_dtype

NEVER = -1
CLOCKS = ("wall", "cpu")
GREEDY = SamplingSettings(greedy=True)


@torch.inference_mode()
def former_loop(llm, prompt_embeds, prompt_ids, max_new_tokens, penalties: RepetitionPenalties) -> TokenRun:
    """The loop voxport ran before the engine: a dynamic cache, both penalties by gather/scatter over the ids
    seen, and `int(token)` (a host sync) every token."""
    cache = DynamicCache(config=llm.config)
    logits = llm(inputs_embeds=prompt_embeds, past_key_values=cache, use_cache=True, logits_to_keep=1).logits
    seen, ids = prompt_ids, []
    for _ in range(max_new_tokens):
        scores = _gather_penalty(logits[:, -1].float(), seen, penalties.penalty)
        scores = _gather_penalty(scores, seen[:, -penalties.window :], penalties.windowed_penalty)
        token = pick_tokens(scores, GREEDY)
        ids.append(int(token))
        if len(ids) == max_new_tokens:
            break
        seen = torch.cat([seen, token.view(1, 1)], dim=1)
        logits = llm(input_ids=token.view(1, 1), past_key_values=cache, use_cache=True).logits
    return TokenRun(ids=ids, prefill_positions=prompt_embeds.shape[1], stopped=False)


def _gather_penalty(logits, seen, penalty):
    scores = logits.gather(-1, seen)
    return logits.scatter(-1, seen, torch.where(scores < 0, scores * penalty, scores / penalty))


def real_width_llm(layers: int, dtype: torch.dtype, device: torch.device) -> Qwen2ForCausalLM:
    """Covo-Audio-Chat's LLM at its real widths with random weights and `layers` of its 28 layers."""
    config = covo_shaped_config(layers, 1).llm
    config._attn_implementation = "sdpa"
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # built in the target dtype: no float32 copy of the weights
    try:
        with torch.device(device):
            return Qwen2ForCausalLM(config).eval()
    finally:
        torch.set_default_dtype(default)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--layers", type=int, default=0, help="real widths with this many layers (0: tiny checkpoint)")
    parser.add_argument("--prompt", type=int, default=128, help="prompt positions")
    parser.add_argument("--tokens", type=int, default=33)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--compile", action="store_true", help="compile the engine's step where the backend can")
    parser.add_argument(
        "--threads",
        type=int,
        help="CPU threads (on a shared machine, 1 keeps OpenMP from waiting on a busy core at every parallel kernel)",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    backend = backend_for(device)
    if args.layers:
        llm = real_width_llm(args.layers, dtype, device)
        label = f"real widths, {args.layers} layers"
    else:
        model = CovoAudioChat.load(make_tiny_covo(Path(tempfile.mkdtemp(prefix="voxport-covo-bench-"))), device, dtype)
        llm, label = model.network.llm, "tiny checkpoint"
    generator = torch.Generator().manual_seed(0)
    prompt_ids = torch.randint(0, llm.config.vocab_size, (1, args.prompt), generator=generator).to(device)
    with torch.inference_mode():
        prompt_embeds = llm.get_input_embeddings()(prompt_ids)
    penalties = RepetitionPenalties()
    compile_step = backend.compile_step if args.compile else None

    def engine_run(tokens):
        engine = TokenEngine(llm, backend.grouped_query_attention, compile_step=compile_step)
        return engine.generate(prompt_embeds, prompt_ids, NEVER, tokens, GREEDY, penalties, None)

    paths = {
        "former loop": lambda tokens: former_loop(llm, prompt_embeds, prompt_ids, tokens, penalties),
        "engine": engine_run,
    }
    print(
        f"Covo LLM ({label}) on {device} ({torch.get_num_threads()} threads), "
        f"{str(dtype).removeprefix('torch.')}, prompt {args.prompt} positions, "
        f"{args.tokens} greedy tokens with both penalties, {args.repeats} interleaved repeats"
    )
    tokens = {name: run(args.tokens).ids for name, run in paths.items()}  # warm-up (and compilation)
    times = {(name, clock): {"prefill": [], "decode": []} for name in paths for clock in CLOCKS}
    for _ in range(args.repeats):
        for name, run in paths.items():
            one, full = _timed(run, 1, backend, device), _timed(run, args.tokens, backend, device)
            for clock in CLOCKS:
                times[name, clock]["prefill"].append(one[clock])
                times[name, clock]["decode"].append((full[clock] - one[clock]) / (args.tokens - 1))
    medians = {key: {part: statistics.median(values) for part, values in parts.items()} for key, parts in times.items()}
    for clock in CLOCKS:
        for name in paths:
            parts = medians[name, clock]
            print(
                f"{clock:5s} {name:12s} prefill {parts['prefill']:.4f} s   "
                f"decode {parts['decode'] * 1000:8.2f} ms/token"
            )
        former, engine = medians["former loop", clock], medians["engine", clock]
        print(
            f"{clock:5s} engine / former loop: decode {former['decode'] / engine['decode']:.2f}x faster, "
            f"prefill {former['prefill'] / engine['prefill']:.2f}x"
        )
    print(f"greedy tokens identical: {tokens['former loop'] == tokens['engine']}")


def _timed(run, tokens: int, backend, device) -> dict[str, float]:
    """Wall-clock and process CPU seconds of one run."""
    backend.synchronize(device)
    wall, cpu = time.perf_counter(), time.process_time()
    run(tokens)
    backend.synchronize(device)
    return {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu}


if __name__ == "__main__":
    main()
