"""The voice endpoints, in the paths and shapes of OpenAI's SDK (`client.audio.voice_consents`,
`client.audio.voices`), plus GET /v1/audio/voices listing every voice a speech request may name."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request

from voxport.serve.bodies import FORM_TEXT_BYTES, form_fields, json_object
from voxport.serve.errors import APIError
from voxport.serve.voices import MAX_UPLOAD_BYTES, VoiceBook

MAX_LIST = 100


def voice_routes(book: VoiceBook) -> APIRouter:
    router = APIRouter(prefix="/v1/audio")

    @router.post("/voice_consents")
    async def create_consent(request: Request):
        fields, files = await form_fields(
            request, texts={"name", "language"}, uploads={"recording"}, limit=MAX_UPLOAD_BYTES
        )
        consent = await asyncio.to_thread(
            book.add_consent, fields.get("name"), fields.get("language"), files.get("recording")
        )
        return consent.to_api()

    @router.get("/voice_consents")
    async def list_consents(after: str | None = None, limit: int = 20):
        if not 1 <= limit <= MAX_LIST:
            raise APIError(400, f"limit is {limit}: expected 1 to {MAX_LIST}", "limit")
        consents = book.consent_list()
        if after is not None:
            ids = [consent.id for consent in consents]
            if after not in ids:
                raise APIError(400, f"after {after!r} is not a voice consent id", "after")
            consents = consents[ids.index(after) + 1 :]
        page = [consent.to_api() for consent in consents[:limit]]
        return {
            "object": "list",
            "data": page,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
            "has_more": len(consents) > limit,
        }

    @router.get("/voice_consents/{consent_id}")
    async def get_consent(consent_id: str):
        return book.consent(consent_id).to_api()

    @router.post("/voice_consents/{consent_id}")
    async def rename_consent(consent_id: str, request: Request):
        body = await json_object(request, FORM_TEXT_BYTES)
        unknown = sorted(set(body) - {"name"})
        if unknown:
            raise APIError(400, f"unknown field {', '.join(unknown)}: a consent update takes only name", unknown[0])
        return (await asyncio.to_thread(book.rename_consent, consent_id, body.get("name"))).to_api()

    @router.delete("/voice_consents/{consent_id}")
    async def delete_consent(consent_id: str):
        await asyncio.to_thread(book.delete_consent, consent_id)
        return {"id": consent_id, "deleted": True, "object": "audio.voice_consent"}

    @router.post("/voices")
    async def create_voice(request: Request):
        prompt_only = {"prompt", "model", "script_hint"}  # the SDK's fields for voices designed from a prompt
        fields, files = await form_fields(
            request,
            texts={"name", "consent", "transcript", "type"} | prompt_only,
            uploads={"audio_sample"},
            limit=MAX_UPLOAD_BYTES,
        )
        if fields.get("type", "audio_sample") != "audio_sample" or prompt_only & set(fields):
            raise APIError(
                400,
                "voices designed from a prompt are not supported here: make one from an "
                "audio_sample (the model continues a recorded voice; it cannot design one from a "
                "prompt)",
                "type",
            )
        voice = await asyncio.to_thread(
            book.add_voice,
            fields.get("name"),
            fields.get("consent"),
            fields.get("transcript"),
            files.get("audio_sample"),
        )
        return voice.to_api()

    @router.get("/voices")
    async def list_voices():
        return {"voices": book.listing()}

    @router.delete("/voices/{voice_id}")
    async def delete_voice(voice_id: str):
        await asyncio.to_thread(book.delete_voice, voice_id)
        return {"id": voice_id, "deleted": True, "object": "audio.voice.deleted"}

    return router
