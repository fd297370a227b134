"""Normalization: a table of written inputs per language with the spoken form expected, and offsets that lead
every spoken piece back to exactly the characters it says."""

import random

import pytest

from voxport.text.normalize import normalize
from voxport.text.script import language_at
from voxport.text.spoken import Spoken

ENGLISH = [
    ("It costs $3.50.", "It costs three dollars and fifty cents."),
    ("$1 and $0.99", "one dollar and ninety-nine cents"),
    ("£2.01, €1 and $1.5M", "two pounds and one penny, one euro and one point five million dollars"),
    ("See you on 2026-12-05 at 10:30.", "See you on December fifth, twenty twenty-six at ten thirty."),
    ("Born 12/05/1999.", "Born December fifth, nineteen ninety-nine."),
    ("December 5, 2026 and Jan. 3rd", "December fifth, twenty twenty-six and January third"),
    ("at 10:00, 10:05 or 7 pm", "at ten o'clock, ten oh five or seven p m"),
    ("The 1st, 2nd and 23rd", "The first, second and twenty-third"),
    ("1,234 and 42", "one thousand, two hundred and thirty-four and forty-two"),
    ("pi is 3.14, it is -5 now", "pi is three point one four, it is minus five now"),
    ("50% and 2.5%", "fifty percent and two point five percent"),
    ("Call 555-123-4567.", "Call five five five, one two three, four five six seven."),
    ("or +1 (555) 123-4567", "or plus one, five five five, one two three, four five six seven"),
    ("5 km, 1 kg, 25°C", "five kilometers, one kilogram, twenty-five degrees Celsius"),
    ("pages 10-20", "pages ten to twenty"),
    ("in 1999 there were 2026 people", "in nineteen ninety-nine there were two thousand and twenty-six people"),
    ("Dr. Smith vs. Mr. Jones, etc.", "Doctor Smith versus Mister Jones, et cetera."),
    ("No. 5, e.g. this", "number five, for example this"),
    ("Visit https://example.com/a1 now", "Visit h t t p s colon slash slash example dot com slash a one now"),
    ("Mail me.too@x.org.", "Mail me dot too at x dot org."),
    ("salt & pepper", "salt and pepper"),
    ("a < b, plain text", "a < b, plain text"),
    ("version v1.2 of H2O", "version v1.2 of H2O"),
    ("5G and 1e5", "five G and one e5"),
    ("card 4111111111111111", "card four one one one one one one one one one one one one one one one"),
]

CHINESE = [
    ("2026年12月5日", "二零二六年十二月五日"),
    ("会议在2026-12-05上午10:30", "会议在二零二六年十二月五日上午十点三十分"),
    ("下午2:00到10:05", "下午两点到十点零五分"),
    ("价格是¥3.50", "价格是三元五角"),
    ("只要￥0.05", "只要五分"),
    ("花了$20", "花了二十美元"),
    ("增长了50%", "增长了百分之五十"),
    ("电话13812345678", "电话幺三八，幺二三四，五六七八"),
    ("跑了5km，重2kg", "跑了五公里，重两公斤"),
    ("共2个人，2000人", "共两个人，两千人"),
    ("圆周率3.14，气温-5度", "圆周率三点一四，气温负五度"),
    ("编号007，卡号123456789012345", "编号零零七，卡号一二三四五六七八九零一二三四五"),
    ("1.5亿，3万", "一点五亿，三万"),
    ("第3名，90年代", "第三名，九零年代"),
    ("第10-20页", "第十到二十页"),
    ("增长１２．５％，时间：１０：３０", "增长百分之十二点五，时间：十点三十分"),
]


@pytest.mark.parametrize("written, spoken", ENGLISH + CHINESE)
def test_spoken_form(written, spoken):
    assert normalize(written).text == spoken


@pytest.mark.parametrize("written", [written for written, _ in ENGLISH + CHINESE])
def test_pieces_map_back_exactly(written):
    """The pieces tile the input: in order, with no gap, each copied piece equal to its source characters, and
    every replaced piece's source is a whole written token (no space at its edges)."""
    spoken = normalize(written)
    assert "".join(written[p.source_start : p.source_end] for p in spoken.pieces) == written
    assert [p.source_start for p in spoken.pieces[1:]] == [p.source_end for p in spoken.pieces[:-1]]
    assert "".join(spoken.text[p.spoken_start : p.spoken_end] for p in spoken.pieces) == spoken.text
    for piece in spoken.pieces:
        source = written[piece.source_start : piece.source_end]
        if piece.verbatim:
            assert spoken.text[piece.spoken_start : piece.spoken_end] == source
        else:
            assert source == source.strip() and source


def test_spans_lead_back_to_the_written_words():
    written = "It costs $3.50. See you on 2026-12-05 at 10:30."
    spoken = normalize(written)
    for said, original in [
        ("fifty cents", "$3.50"),
        ("December", "2026-12-05"),
        ("thirty", "10:30"),
        ("costs", "costs"),
        ("ost", "ost"),
    ]:
        start = spoken.text.index(said)
        begin, end = spoken.source_span(start, start + len(said))
        assert written[begin:end] == original


def test_chinese_spans_lead_back():
    written = "价格是¥3.50，电话13812345678"
    spoken = normalize(written)
    start = spoken.text.index("五角")
    assert written[slice(*spoken.source_span(start, start + 2))] == "¥3.50"
    start = spoken.text.index("价")
    assert written[slice(*spoken.source_span(start, start + 1))] == "价"


def test_any_text_is_tiled_by_its_pieces():
    """Random mixes of digits, symbols, letters and Chinese never fail and always map back exactly."""
    alphabet = list("0123456789" * 3 + " .,:-/$€£¥%@+()&abcKMkmgsth年月日个点，。价格１．％") + [
        "Dr. ",
        "etc.",
        "www.",
        "https://",
        " am",
        " pm",
        "°C",
    ]
    rng = random.Random(0)
    for _ in range(3000):
        written = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 25)))
        spoken = normalize(written)
        assert "".join(written[p.source_start : p.source_end] for p in spoken.pieces) == written


def test_switched_off_copies_everything():
    written = "It costs $3.50 on 2026-12-05."
    spoken = normalize(written, rules=False)
    assert spoken.text == written
    assert spoken.pieces == Spoken.verbatim(written).pieces


@pytest.mark.parametrize(
    "text, span, language",
    [
        ("in 2026", (3, 7), "en"),
        ("2026年", (0, 4), "zh"),
        ("价格 $5 dollars", (3, 5), "zh"),  # a tie: the letter before
        ("价格：  $5 dollars", (5, 7), "en"),
        ("价格$5，", (2, 4), "zh"),
        ("42", (0, 2), "en"),
        ("跑了5km", (2, 5), "zh"),
        ("（3）", (1, 2), "zh"),
        ("Москва 5 km", (7, 8), "en"),
        ("ｉｎ 5", (3, 4), "zh"),
    ],
)
def test_language_is_the_nearest_letters(text, span, language):
    assert language_at(text, *span) == language


def test_a_text_without_letters_is_read_in_the_default_language():
    assert normalize("42", default="zh").text == "四十二"
    assert normalize("42").text == "forty-two"
