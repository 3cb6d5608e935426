"""``gpuyard worker tts``: ``POST /v1/audio/speech`` and ``GET /v1/audio/voices`` with eSpeak NG.

Voices are eSpeak's languages by code (``en-us``, ``en-gb``, ``fr-fr``, ``de``…), optionally with a
variant (``en-us+f3``, ``de+m2``), plus OpenAI's voice names mapped onto English variants
(``alloy`` → ``en-us``, ``nova`` → ``en-us+f3``, …). ``speed`` 0.25 to 4.0 scales eSpeak's 175 words
per minute, clamped to its 80 to 450 range. ``response_format`` is ``wav`` (the default here;
OpenAI's default, mp3, would need an encoder) or ``pcm``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gpuyard.workers import audio, espeak
from gpuyard.workers.errors import bad_request
from gpuyard.workers.espeak import Espeak
from gpuyard.workers.json_body import read_json
from gpuyard.workers.serving import ModelSlot, create_app

DEFAULT_MODEL_ID = "espeak-ng"
DEFAULT_VOICE = "en-us"
DEFAULT_MAX_INPUT_CHARS = 4096
MAX_BODY_BYTES = 1024 * 1024

OPENAI_VOICES = {
    "alloy": "en-us",
    "ash": "en-us+m3",
    "ballad": "en-gb+m2",
    "cedar": "en-us+m6",
    "coral": "en-us+f2",
    "echo": "en-us+m2",
    "fable": "en-gb+m1",
    "marin": "en-us+f1",
    "nova": "en-us+f3",
    "onyx": "en-us+m7",
    "sage": "en-us+f4",
    "shimmer": "en-us+f5",
    "verse": "en-us+m4",
}


class VoiceRef(BaseModel):
    id: str


class SpeechRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1)
    input: str
    voice: str | VoiceRef | None = None
    response_format: str = "wav"
    speed: float = Field(default=1.0, ge=0.25, le=4.0)
    instructions: str | None = None
    stream_format: str | None = None


@dataclass
class Speaker:
    """A loaded synthesiser, its public voice names, and a lock: eSpeak is not thread-safe."""

    engine: Espeak
    voices: dict[str, str]
    """Public voice name → eSpeak voice (language code with an optional ``+variant``)."""
    default_voice: str
    lock: threading.Lock

    def resolve(self, requested: str | None) -> str:
        name = (requested or self.default_voice).strip().lower()
        if name in self.voices:
            return self.voices[name]
        base, plus, variant = name.partition("+")
        known_variants = self.engine.variants
        if (
            base in self.engine.voices
            and plus
            and variant
            and (known_variants is None or variant in known_variants)
        ):
            return name
        raise bad_request(
            f"unknown voice {requested!r}; GET /v1/audio/voices lists them "
            "(a language voice also takes a variant, e.g. en-us+f3)",
            param="voice",
            code="invalid_voice",
        )

    def speak(self, text: str, voice: str, rate_wpm: int) -> bytes:
        with self.lock:
            return self.engine.synthesize(text, voice=voice, rate_wpm=rate_wpm)


def load_speaker(default_voice: str) -> Speaker:
    engine = espeak.load()
    voices = {
        alias: target for alias, target in OPENAI_VOICES.items() if _speakable(engine, target)
    }
    voices.update({language: language for language in engine.voices})
    speaker = Speaker(engine, voices, default_voice, threading.Lock())
    try:
        speaker.resolve(default_voice)
    except Exception:
        raise ValueError(
            f"--voice-default {default_voice!r} is not a voice of this eSpeak"
        ) from None
    return speaker


def _speakable(engine: Espeak, target: str) -> bool:
    base, _, variant = target.partition("+")
    variants = engine.variants
    return base in engine.voices and (not variant or variants is None or variant in variants)


class SpeechService:
    def __init__(self, slot: ModelSlot[Speaker], *, max_input_chars: int) -> None:
        self.slot = slot
        self.max_input_chars = max_input_chars

    async def speech(self, request: Request) -> Response:
        body = await read_json(request, SpeechRequest, max_bytes=MAX_BODY_BYTES)
        if not body.input.strip():
            raise bad_request("input is empty; send the text to speak", param="input")
        if len(body.input) > self.max_input_chars:
            raise bad_request(
                f"input is {len(body.input)} characters; at most {self.max_input_chars}",
                param="input",
                code="input_too_long",
            )
        response_format = body.response_format.lower()
        if response_format not in audio.FORMATS:
            raise bad_request(
                f"response_format {body.response_format!r} is not supported by this worker; "
                f"use one of {', '.join(audio.FORMATS)}",
                param="response_format",
                code="unsupported_response_format",
            )
        if body.stream_format not in (None, "audio"):
            raise bad_request(
                "stream_format 'sse' is not supported by this worker; leave it out or use 'audio'",
                param="stream_format",
                code="unsupported_stream_format",
            )
        speaker = self.slot.get()
        voice = speaker.resolve(body.voice.id if isinstance(body.voice, VoiceRef) else body.voice)
        rate = round(espeak.DEFAULT_RATE_WPM * body.speed)
        samples = await run_in_threadpool(speaker.speak, body.input, voice, rate)
        payload = audio.encode(samples, speaker.engine.sample_rate, response_format)
        return Response(payload, media_type=audio.FORMATS[response_format])

    async def voices(self, _request: Request) -> Response:
        speaker = self.slot.get()
        return JSONResponse({"voices": list(speaker.voices)})


def build_app(
    *,
    model_id: str = DEFAULT_MODEL_ID,
    default_voice: str = DEFAULT_VOICE,
    max_input_chars: int = DEFAULT_MAX_INPUT_CHARS,
) -> tuple[Starlette, ModelSlot[Speaker]]:
    slot: ModelSlot[Speaker] = ModelSlot(model_id, lambda: load_speaker(default_voice))
    service = SpeechService(slot, max_input_chars=max_input_chars)
    app = create_app(
        slot,
        [
            Route("/v1/audio/speech", service.speech, methods=["POST"]),
            Route("/v1/audio/voices", service.voices, methods=["GET"]),
        ],
    )
    return app, slot
