"""Covo's static-cache token engine: penalties as masks, the stop token inside a chunk, cache growth, one graph."""

from types import SimpleNamespace

import pytest
import torch
from transformers import RepetitionPenaltyLogitsProcessor

from voxport.errors import InputError
from voxport.models.base import ChatSettings
from voxport.models.covo import CovoAudioChat
from voxport.models.covo.generation import CHECK_EVERY, RepetitionPenalties, TokenEngine, penalize, penalty_state
from voxport.models.sampling import SamplingSettings

GREEDY = SamplingSettings(greedy=True)
SAMPLED = SamplingSettings(temperature=1.5, top_k=0, top_p=0.95)
NEVER = -1


def round_zero(model):
    """The example clip's round-0 prompt: ids [1, T] and embeddings [1, T, hidden]."""
    clip = model.example_inputs().clip
    ids = model.prompt_ids(clip.placeholders, first_round=True)
    return ids, model.prompt_embeds(ids, clip)


def test_penalty_masks_equal_transformers_repetition_penalty():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(1, 50, generator=generator)
    ids = torch.tensor([[3, 7, 7, 12, 3, 49]])  # repeats are penalised once, as transformers does
    seen, recent = penalty_state(ids, 50, window=4)
    expected = RepetitionPenaltyLogitsProcessor(1.3)(ids, logits.clone())
    assert torch.equal(penalize(logits, seen, 1.3), expected)
    assert recent.tolist() == [[7, 12, 3, 49]]
    short_seen, short_recent = penalty_state(ids[:, :2], 50, window=4)
    assert short_recent.tolist() == [[3, 3, 3, 7]] and short_seen.sum() == 2


def test_stop_token_inside_a_chunk_ends_the_run_and_the_history(tiny_covo):
    """A stop mid-chunk: the ids end at it, the history excludes it, and the next round sees only history."""
    llm = tiny_covo.network.llm
    ids, embeds = round_zero(tiny_covo)
    free = TokenEngine(llm, True).generate(embeds, ids, NEVER, 2 * CHECK_EVERY, GREEDY, RepetitionPenalties(), None)
    stop_at = next(k for k in range(3, 2 * CHECK_EVERY) if k % CHECK_EVERY and free.ids[k] not in free.ids[:k])
    engine = TokenEngine(llm, True)
    run = engine.generate(embeds, ids, free.ids[stop_at], 2 * CHECK_EVERY, GREEDY, RepetitionPenalties(), None)
    assert run.ids == free.ids[: stop_at + 1] and run.stopped
    assert engine.positions == ids.shape[1] + stop_at  # the stop token itself is not history
    # The next round over rows the overrun wrote equals a fresh engine fed the same history.
    later_ids = tiny_covo.prompt_ids(5, first_round=False)
    later = tiny_covo.network.llm.get_input_embeddings()(later_ids)
    continued = engine.generate(later, later_ids, NEVER, 6, GREEDY, RepetitionPenalties(), None)
    replies = llm.get_input_embeddings()(torch.tensor([run.ids[:-1]]))
    fresh = TokenEngine(llm, True).generate(
        torch.cat([embeds, replies, later], dim=1), later_ids, NEVER, 6, GREEDY, RepetitionPenalties(), None
    )
    assert continued.ids == fresh.ids


def test_a_growing_cache_keeps_its_history(tiny_covo):
    llm = tiny_covo.network.llm
    ids, embeds = round_zero(tiny_covo)
    runs = []
    for capacity in (256, 4096):
        engine = TokenEngine(llm, True, capacity=capacity)
        rounds = [engine.generate(embeds, ids, NEVER, 5, GREEDY, RepetitionPenalties(), None).ids for _ in range(3)]
        runs.append((rounds, engine.stack.length))
    assert 2 * (ids.shape[1] + 5) < 256 < 3 * (ids.shape[1] + 5)  # the third round grows the cache
    assert runs[0][0] == runs[1][0] and runs[0][1] == 512 and runs[1][1] == 4096


@pytest.mark.parametrize("sampling", [GREEDY, SAMPLED], ids=["greedy", "sampled"])
def test_decode_step_is_one_graph(tiny_covo, sampling):
    """The step torch.compile captures whole (fullgraph: no graph break), as CUDA graphs need; same tokens."""
    llm = tiny_covo.network.llm
    ids, embeds = round_zero(tiny_covo)
    runs = []
    for capture in (False, True):
        engine = TokenEngine(llm, True)
        step = torch.compile(engine.step, backend="eager", fullgraph=True) if capture else None
        generator = torch.Generator().manual_seed(3)
        runs.append(engine.generate(embeds, ids, NEVER, 10, sampling, RepetitionPenalties(), generator, step=step).ids)
    assert runs[0] == runs[1] and len(runs[0]) == 10


def test_runs_past_the_context_are_refused(tiny_covo):
    ids, embeds = round_zero(tiny_covo)
    limit = tiny_covo.config.llm.max_position_embeddings
    with pytest.raises(InputError, match=f"exceeds the model's context of {limit} positions"):
        TokenEngine(tiny_covo.network.llm, True).generate(
            embeds, ids, NEVER, limit, GREEDY, RepetitionPenalties(), None
        )


def test_token_progress_comes_a_chunk_at_a_time(tiny_covo):
    ids, embeds = round_zero(tiny_covo)
    heard = []
    TokenEngine(tiny_covo.network.llm, True).generate(
        embeds, ids, NEVER, 2 * CHECK_EVERY + 3, GREEDY, RepetitionPenalties(), None, lambda ids: heard.append(len(ids))
    )
    assert heard == [CHECK_EVERY, 2 * CHECK_EVERY, 2 * CHECK_EVERY + 3]


def test_compiled_step_is_the_one_conversations_run(tiny_covo_dir):
    """compile() hands the step to the backend's compile_step; each conversation then decodes through its result."""
    model = CovoAudioChat.load(tiny_covo_dir, torch.device("cpu"), torch.float32)
    clip = model.example_inputs().clip
    eager = model.chat(ChatSettings(max_new_tokens=6, greedy=True)).say(clip)
    calls = []

    def counting(step):
        def counted(*args):
            calls.append(1)
            return step(*args)

        return counted

    model.backend = SimpleNamespace(compile_step=counting, grouped_query_attention=True)
    model.compile()
    compiled = model.chat(ChatSettings(max_new_tokens=6, greedy=True)).say(clip)
    assert compiled.text_token_ids + compiled.audio_codes == eager.text_token_ids + eager.audio_codes
    assert len(calls) == 5  # every token but the last runs through the step
