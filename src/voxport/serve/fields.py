"""Request field types and checks every endpoint shares, so each refuses the same mistakes the same way (a 400
naming the field): seeds a generator can take, finite numbers (JSON's NaN and Infinity are refused), text that
can be sent on as UTF-8, and speaker ids written in ASCII digits."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field

from voxport.runtime.seeding import SEED_LIMIT
from voxport.serve.errors import APIError

Seed = Annotated[int, Field(ge=0, lt=SEED_LIMIT)]  # what torch generators take
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]

MAX_SPEAKER_DIGITS = 9  # speaker ids are small numbers; a longer run of digits is a mistake, not an id
_SPEAKER_ID = re.compile(rf"[0-9]{{1,{MAX_SPEAKER_DIGITS}}}")  # [0-9], not \d: "²" and "٣" are digits to str
_SURROGATE = re.compile("[\ud800-\udfff]")


def valid_text(value: str, field: str) -> str:
    """`value`, when it is text UTF-8 can carry. JSON's "\\ud800" escape gives a lone surrogate, which no
    encoder takes: it would fail later, deep in a tokenizer or a file write, as a server error."""
    if _SURROGATE.search(value):
        raise APIError(
            400,
            f"{field or 'the request body'} holds a lone surrogate (an unpaired \\ud800-\\udfff "
            "escape): expected valid Unicode text",
            field or None,
        )
    return value


def speaker_id(value: str) -> int | None:
    """The speaker id `value` spells in ASCII digits (at most MAX_SPEAKER_DIGITS), else None."""
    return int(value) if _SPEAKER_ID.fullmatch(value) else None
