"""The SSML subset: breaks, say-as, sub, p/s; offsets into the markup; everything else refused with its place."""

import random

import pytest

from voxport.errors import InputError
from voxport.text.plan import plan_text
from voxport.text.segments import Break, Speech
from voxport.text.ssml import MAX_BREAK_SECONDS


def spoken_and_breaks(plan):
    return [segment.text if isinstance(segment, Speech) else segment.seconds for segment in plan.segments]


def test_the_issue_example():
    text = '<speak>It costs $3.50.<break time="700ms"/>See you on 2026-12-05 at 10:30.</speak>'
    plan = plan_text(text)
    assert spoken_and_breaks(plan) == [
        "It costs three dollars and fifty cents.",
        0.7,
        "See you on December fifth, twenty twenty-six at ten thirty.",
    ]
    second = plan.segments[2].spoken
    start = second.text.index("ten thirty")
    assert text[slice(*second.source_span(start, start + 10))] == "10:30"


@pytest.mark.parametrize(
    "markup, seconds",
    [
        ('<break time="500ms"/>', 0.5),
        ('<break time="1.5s"/>', 1.5),
        ('<break time=".25s"/>', 0.25),
        ('<break strength="none"/>', 0.0),
        ('<break strength="x-weak"/>', 0.25),
        ('<break strength="x-strong"/>', 1.25),
        ("<break/>", 0.75),
        ('<break time="2s" strength="weak"/>', 2.0),
        ('<break time="1h"/>', None),
        ('<break time="60s"/>', MAX_BREAK_SECONDS),
        ('<break time="6s"/><break time="6s"/>', MAX_BREAK_SECONDS),
        ('<break time="300ms"/><break strength="weak"/>', 0.8),
    ],
)
def test_breaks(markup, seconds):
    text = f"<speak>one{markup}two</speak>"
    if seconds is None:
        with pytest.raises(InputError, match=r"line 1, column 11: <break time='1h'>: expected a duration"):
            plan_text(text)
        return
    assert spoken_and_breaks(plan_text(text)) == ["one", pytest.approx(seconds), "two"]


@pytest.mark.parametrize(
    "inner, spoken",
    [
        ('<say-as interpret-as="characters">ABC</say-as>', "A B C"),
        ('<say-as interpret-as="cardinal">1,234</say-as>', "one thousand, two hundred and thirty-four"),
        ('<say-as interpret-as="ordinal">3</say-as>', "third"),
        ('<say-as interpret-as="date">2026-12-05</say-as>', "December fifth, twenty twenty-six"),
        ('<say-as interpret-as="date" format="dmy">05/12/2026</say-as>', "December fifth, twenty twenty-six"),
        ('<say-as interpret-as="time">10:05</say-as>', "ten oh five"),
        (
            '<say-as interpret-as="telephone">555 123 4567</say-as>',
            "five five five, one two three, four five six seven",
        ),
        ('<sub alias="World Wide Web Consortium">W3C</sub>', "World Wide Web Consortium"),
        ('价格<say-as interpret-as="cardinal">2026</say-as>元', "价格两千零二十六元"),
        ('<say-as interpret-as="characters">A1</say-as>', "A one"),
    ],
)
def test_say_as_and_sub(inner, spoken):
    assert spoken_and_breaks(plan_text(f"<speak>{inner}</speak>")) == [spoken]


def test_say_as_applies_with_normalization_off():
    plan = plan_text('<speak>$5 <say-as interpret-as="cardinal">12</say-as></speak>', normalize=False)
    assert spoken_and_breaks(plan) == ["$5 twelve"]


def test_offsets_point_into_the_markup():
    text = (
        '<speak><s>Hi &amp; <sub alias="Doctor">Dr.</sub> Lee</s>'
        '<s>on <say-as interpret-as="date">2026-12-05</say-as></s></speak>'
    )
    speech = plan_text(text).segments[0]
    assert speech.text == "Hi and Doctor Lee on December fifth, twenty twenty-six"
    for said, original in [
        ("and", "&amp;"),
        ("Doctor", "Dr."),
        ("Lee", "Lee"),
        ("December", "2026-12-05"),
        ("Hi", "Hi"),
    ]:
        start = speech.text.index(said)
        assert text[slice(*speech.spoken.source_span(start, start + len(said)))] == original


def test_sentences_do_not_run_together():
    assert spoken_and_breaks(plan_text("<speak><p><s>One</s><s>two</s></p><p>three</p></speak>")) == ["One two three"]
    text = '<speak><s>Room</s><say-as interpret-as="cardinal"> 12 </say-as>.</speak>'
    assert spoken_and_breaks(plan_text(text)) == ["Room twelve ."]


def test_xml_lang_is_the_default_language():
    assert spoken_and_breaks(plan_text('<speak xml:lang="zh-CN">42</speak>')) == ["四十二"]


@pytest.mark.parametrize("text", ["a < b and c > d", "x<y", "<b>bold</b> is not SSML", "Tom & Jerry"])
def test_plain_text_stays_plain(text):
    assert plan_text(text, normalize=False).segments[0].text == text


def test_asked_for_ssml_without_speak_is_wrapped():
    text = 'one<break time="1s"/>two'
    plan = plan_text(text, ssml=True)
    assert spoken_and_breaks(plan) == ["one", 1.0, "two"]
    assert plan.segments[2].spoken.source_span(0, 3) == (text.index("two"), len(text))
    with pytest.raises(InputError, match=r"SSML line 1, column 4: unknown tag <b>"):
        plan_text("one<b>x</b>", ssml=True)


@pytest.mark.parametrize(
    "text, message",
    [
        ("<speak>Hi <prosody rate='slow'>there</prosody></speak>", r"line 1, column 11: unknown tag <prosody>"),
        ("<speak>Hi\n  <emphasis>x</emphasis></speak>", r"line 2, column 3: unknown tag <emphasis>"),
        ('<speak>Hi <break time="1s" foo="2"/></speak>', r"line 1, column 11: unknown attribute 'foo' on <break>"),
        (
            '<speak>Hi <say-as interpret-as="spell-out">x</say-as></speak>',
            r"line 1, column 11: <say-as interpret-as='spell-out'>: expected one of characters",
        ),
        (
            '<speak><say-as interpret-as="cardinal">twelve</say-as></speak>',
            r"cannot read 'twelve': expected a whole number",
        ),
        ('<speak><say-as interpret-as="date">2026-13-05</say-as></speak>', r"cannot read '2026-13-05'"),
        ("<speak><sub>W3C</sub></speak>", r"line 1, column 8: <sub> needs an alias"),
        ('<speak><sub alias="x"><s>y</s></sub></speak>', r"line 1, column 23: <s> inside <sub>"),
        ("<speak>Hi <break time='1s'></speak>", r"line 1, column 30: mismatched tag"),
        ("<speak>Hi &nbsp; there</speak>", r"line 1, column 11: undefined entity"),
        ("<speak>über\n <b", r"line 2, column 4: unclosed token|line 2, column \d+: "),
        ('<?xml version="1.0"?><!DOCTYPE speak [<!ENTITY a "b">]><speak>x</speak>', r"DOCTYPE is not allowed"),
        ("<speak>a<?php x ?></speak>", r"processing instruction"),
        ("<speak><speak>x</speak></speak>", r"line 1, column 8: <speak> must be the root"),
    ],
)
def test_malformed_or_unknown_markup_is_refused_with_its_place(text, message):
    with pytest.raises(InputError, match=message):
        plan_text(text)


def test_no_ssml_gives_no_segments_for_blank_text():
    assert plan_text("   ").segments == ()
    assert plan_text('<speak><break time="1s"/></speak>').segments == (Break(1.0),)


def test_any_markup_is_read_or_refused_and_pieces_point_into_it():
    """Random mixes of the subset, entities, comments, stray tags and angle brackets: either an InputError, or
    a plan whose copied pieces are exactly the input's characters."""
    parts = [
        "Hi ",
        "there",
        " $3.50",
        "&amp;",
        "&lt;",
        '<break time="1s"/>',
        "<break/>",
        "<s>",
        "</s>",
        "<p>",
        "</p>",
        '<sub alias="X Y">',
        "</sub>",
        '<say-as interpret-as="cardinal">',
        "</say-as>",
        "12",
        "价格",
        "\n",
        "<!-- c -->",
        "<bad>",
        "<",
        ">",
        "ü",
    ]
    rng = random.Random(1)
    read = 0
    for _ in range(2000):
        text = "<speak>" + "".join(rng.choice(parts) for _ in range(rng.randint(0, 10))) + "</speak>"
        try:
            plan = plan_text(text)
        except InputError:
            continue
        read += 1
        for speech in plan.speech:
            for piece in speech.spoken.pieces:
                assert 0 <= piece.source_start <= piece.source_end <= len(text)
                if piece.verbatim:
                    assert (
                        speech.text[piece.spoken_start : piece.spoken_end]
                        == text[piece.source_start : piece.source_end]
                    )
    assert read > 200
