"""Mimi's streaming decoder state: chunks decoded from kept state join into one-shot decoding."""

import torch

from voxport.models.csm.codec_stream import MimiDecodeStream


def test_codec_stream_past_its_attention_window_joins_into_one_shot(tiny_csm):
    """61 frames (122 transformer steps, the window is 16) in uneven chunks: each chunk decoded from the kept
    state alone joins into one-shot decoding within 1e-5 per sample."""
    codec = tiny_csm.model.codec_model
    codes = torch.randint(0, 2048, (1, 32, 61), generator=torch.Generator().manual_seed(0))
    stream = MimiDecodeStream(codec)
    bounds = [0, 1, 3, 11, 12, 40, 61]
    joined = torch.cat([stream.decode(codes[..., a:b]) for a, b in zip(bounds, bounds[1:])], dim=-1)
    with torch.inference_mode():
        one_shot = codec.decode(codes).audio_values
    assert joined.shape == one_shot.shape == (1, 1, 61 * 1920)
    assert float((joined - one_shot).abs().max()) < 1e-5
