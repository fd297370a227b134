"""The body of POST /v1/chat/completions, typed as OpenAI documents it: a wrong type, an unknown field or an
out-of-range number is a 400 naming the field (errors.validation_error), never a 500 or a silent default."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

from voxport.serve.audio_formats import INPUT_FORMATS
from voxport.serve.fields import FiniteFloat, Seed


class Strict(BaseModel):
    """Unknown fields are refused by name, not ignored: a typo must not silently change a request."""

    model_config = ConfigDict(extra="forbid")


class TextPart(Strict):
    type: Literal["text"]
    text: str


class InputAudio(Strict):
    data: str  # base64 audio in any format soundfile reads
    format: Literal[tuple(INPUT_FORMATS)] | None = None  # when given, the bytes must be in it


class AudioPart(Strict):
    type: Literal["input_audio"]
    input_audio: InputAudio


def _one_of(field: str, *values: str) -> Discriminator:
    """Choose a union's member by `field`, so that an error names the chosen member's problem only. Members
    are tagged "<value>"; error locations leave the tags out (errors.py)."""

    def choose(value: Any) -> str | None:
        chosen = value.get(field) if isinstance(value, dict) else getattr(value, field, None)
        return f"<{chosen}>" if chosen in values else None

    return Discriminator(
        choose,
        custom_error_type="invalid_choice",
        custom_error_message=f"expected an object whose {field} is {' or '.join(values)}",
    )


def _string_or_list(value: Any) -> str | None:
    return "<string>" if isinstance(value, str) else "<list>" if isinstance(value, list) else None


def _string_or(parts) -> Any:
    """A plain string, or a list of parts."""
    return Annotated[
        Annotated[str, Tag("<string>")] | Annotated[list[parts], Tag("<list>")],
        Discriminator(
            _string_or_list,
            custom_error_type="invalid_choice",
            custom_error_message="expected a string or a list of content parts",
        ),
    ]


UserPart = Annotated[
    Annotated[AudioPart, Tag("<input_audio>")] | Annotated[TextPart, Tag("<text>")],
    _one_of("type", "input_audio", "text"),
]
Text = _string_or(TextPart)


class SystemMessage(Strict):
    role: Literal["system", "developer"]
    content: Text
    name: str | None = None


class UserMessage(Strict):
    role: Literal["user"]
    content: _string_or(UserPart)
    name: str | None = None


class AudioReference(Strict):
    id: str


class AssistantMessage(Strict):
    role: Literal["assistant"]
    content: Text | None = None
    audio: AudioReference | None = None  # a spoken reply this server gave, by its id
    name: str | None = None
    refusal: str | None = None


Message = Annotated[
    Annotated[SystemMessage, Tag("<system>")]
    | Annotated[SystemMessage, Tag("<developer>")]
    | Annotated[UserMessage, Tag("<user>")]
    | Annotated[AssistantMessage, Tag("<assistant>")],
    _one_of("role", "system", "developer", "user", "assistant"),
]


class AudioOutput(Strict):
    voice: str = "default"
    format: str = "wav"


class StreamOptions(Strict):
    include_usage: bool = True  # usage always comes with the last chunk


class ChatBody(Strict):
    model: str
    messages: list[Message] = Field(min_length=1)
    modalities: list[Literal["text", "audio"]] = ["text"]
    audio: AudioOutput | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: FiniteFloat | None = Field(default=None, ge=0, le=2)
    top_p: FiniteFloat | None = Field(default=None, gt=0, le=1)
    seed: Seed | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: Literal[1] = 1
    user: str | None = None  # the caller's own end-user id: accepted, as OpenAI does, and not used
