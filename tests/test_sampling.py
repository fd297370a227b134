"""Token choice: Gumbel-max sampling draws from softmax(logits / T), restricted by top-k and top-p."""

import torch

from voxport.models.sampling import RowNoise, SamplingSettings, candidates, pick_tokens

LOGITS = torch.tensor([2.0, 1.0, 0.5, -1.0, -3.0])


def frequencies(settings, draws=40000):
    generator = torch.Generator().manual_seed(0)
    picks = pick_tokens(LOGITS.expand(draws, -1), settings, generator)
    return torch.bincount(picks, minlength=len(LOGITS)).double() / draws


def test_sampling_follows_the_softmax():
    settings = SamplingSettings(temperature=0.7, top_k=0)
    expected = torch.softmax(LOGITS / 0.7, dim=-1).double()
    assert torch.allclose(frequencies(settings), expected, atol=0.01)


def test_top_k_and_top_p_cut_the_tail():
    top_k = frequencies(SamplingSettings(temperature=1.0, top_k=2))
    assert top_k[2:].sum() == 0
    assert torch.allclose(top_k[:2], torch.softmax(LOGITS[:2], dim=-1).double(), atol=0.01)
    # softmax(LOGITS) = [0.61, 0.22, 0.14, 0.03, 0.004]: mass 0.8 is first reached by the second id
    top_p = frequencies(SamplingSettings(temperature=1.0, top_k=0, top_p=0.8))
    assert top_p[2:].sum() == 0 and top_p[1] > 0.2
    assert candidates(SamplingSettings(top_k=50), 2048) == 50 and candidates(SamplingSettings(top_k=0), 2048) == 2048


def test_greedy_and_given_noise():
    assert pick_tokens(LOGITS[None], SamplingSettings(greedy=True)).item() == 0
    gumbel = torch.tensor([[0.0, 0.0, 10.0]])  # noise for the top-3 candidates: the third one wins
    assert pick_tokens(LOGITS[None], SamplingSettings(top_k=3), gumbel=gumbel).item() == 2


def test_row_noise_depends_on_the_row_seed_only():
    """A row's noise is the same whatever its batch mates and however the frames are chunked."""

    def noise(seeds):
        return RowNoise(
            [torch.Generator().manual_seed(seed) for seed in seeds], 3, 5, SamplingSettings(), torch.device("cpu")
        )

    whole = noise([7]).take(13)
    chunked = noise([7])
    assert torch.equal(torch.cat([chunked.take(2), chunked.take(8), chunked.take(3)]), whole)
    batched = noise([1, 7]).take(13)
    assert batched.shape == (13, 3, 2, 5)
    assert torch.equal(batched[:, :, 1:], whole) and not torch.equal(batched[:, :, :1], whole)
