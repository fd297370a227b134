"""Request field types every endpoint shares, so each refuses the same mistakes the same way (a 400 naming
the field): seeds a generator can take, finite numbers (JSON's NaN and Infinity are refused)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from voxport.runtime.seeding import SEED_LIMIT

Seed = Annotated[int, Field(ge=0, lt=SEED_LIMIT)]  # what torch generators take
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
