"""Spoken text's offsets: spans map back, chunks of a long text keep their own exact pieces."""

import pytest

from voxport.text.normalize import normalize
from voxport.text.spoken import locate_chunks


def test_a_chunk_keeps_its_offsets_into_the_source():
    written = "First it costs $3.50.\n\nThen   we meet on 2026-12-05 at 10:30."
    spoken = normalize(written)
    chunks = [
        "First it costs three dollars and fifty cents.",
        "Then we meet on December fifth, twenty twenty-six at ten thirty.",
    ]
    spans = locate_chunks(spoken.text, chunks)
    assert [spoken.text[start:end].split() for start, end in spans] == [chunk.split() for chunk in chunks]
    second = spoken.slice(*spans[1])
    assert second.text == "Then   we meet on December fifth, twenty twenty-six at ten thirty."
    assert written[slice(*second.source_span(0, 4))] == "Then"
    start = second.text.index("thirty")
    assert written[slice(*second.source_span(start, start + 6))] == "10:30"
    assert all(piece.spoken_end <= len(second.text) for piece in second.pieces)


def test_a_cut_through_a_replaced_stretch_keeps_its_whole_source():
    written = "It costs $3.50 now"
    spoken = normalize(written)
    cut = spoken.slice(spoken.text.index("fifty"), len(spoken.text))
    assert cut.text == "fifty cents now"
    assert written[slice(*cut.source_span(0, 5))] == "$3.50"


def test_a_chunk_that_is_not_there_is_an_error():
    with pytest.raises(ValueError, match="is not in the text"):
        locate_chunks("one two three", ["one two", "four"])
    with pytest.raises(ValueError, match="is not in the text"):
        locate_chunks("one two", ["two", "one"])  # in order only


def test_long_text_chunks_are_found_and_tile_the_spoken_text():
    """The chunks the long-text splitter makes are found again, and their slices say every source word once."""
    from voxport.services.longform import split_text

    written = (
        "On 2026-12-05 at 10:30 we paid $3.50 each.\nThen\tthe 3rd team ran 5 km, 50% faster; "
        "see https://example.com. 会议在2026年12月5日，价格是¥3.50。"
    )
    spoken = normalize(written)
    chunks = split_text(spoken.text, max_chars=40)
    spans = locate_chunks(spoken.text, chunks)
    assert len(spans) == len(chunks) > 3
    sources = [spoken.slice(*span) for span in spans]
    covered = {
        index for part in sources for piece in part.pieces for index in range(piece.source_start, piece.source_end)
    }
    assert covered >= {index for index, char in enumerate(written) if not char.isspace()}
    copied = [
        index
        for part in sources
        for piece in part.pieces
        if piece.verbatim
        for index in range(piece.source_start, piece.source_end)
    ]
    assert len(copied) == len(set(copied))  # no copied character is in two chunks
    for part, (start, end) in zip(sources, spans):
        assert part.text == spoken.text[start:end]
