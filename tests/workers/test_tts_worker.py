"""``gpuyard worker tts`` as a real subprocess, called with the official ``openai`` SDK."""

from __future__ import annotations

import io
import wave
from collections.abc import Iterator

import httpx
import openai
import pytest

from .conftest import Worker, require, running

# One worker process for the module: its tests run in one xdist worker (one group), not
# started again in each.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("tts-worker")]

require("espeakng_loader", "numpy")


@pytest.fixture(scope="module")
def tts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    args = ["--voice-default", "en-gb", "--max-input-chars", "500"]
    # Another loopback address: answering there shows the worker listens where HOST says.
    with running("tts", args, tmp_path_factory.mktemp("tts"), host="127.0.0.2") as worker:
        yield worker


def client(worker: Worker) -> openai.OpenAI:
    return openai.OpenAI(base_url=worker.base_url, api_key="unused", max_retries=0)


def speak(worker: Worker, **fields: object) -> bytes:
    body = {"model": "espeak-ng", "input": "Hello from gpuyard.", "voice": "alloy", **fields}
    return client(worker).audio.speech.create(**body).content  # type: ignore[arg-type]


def wav_seconds(data: bytes) -> float:
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    with wave.open(io.BytesIO(data)) as audio:
        assert audio.getnchannels() == 1 and audio.getsampwidth() == 2
        return audio.getnframes() / audio.getframerate()


def test_speech_is_a_wav_of_the_right_length(tts: Worker) -> None:
    response = httpx.post(
        f"{tts.base_url}/audio/speech",
        json={"model": "espeak-ng", "input": "Hello from gpuyard.", "voice": "alloy"},
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "audio/wav"
    assert 0.5 < wav_seconds(response.content) < 5
    longer = speak(tts, voice="alloy", input="Hello from gpuyard. " * 4)
    assert wav_seconds(longer) > 2 * wav_seconds(response.content)


def test_speed_voice_and_pcm(tts: Worker) -> None:
    normal = wav_seconds(speak(tts, voice="nova", input="The quick brown fox jumps over it."))
    fast = wav_seconds(
        speak(tts, voice="nova", input="The quick brown fox jumps over it.", speed=2)
    )
    assert fast < 0.75 * normal
    assert wav_seconds(speak(tts, voice="fr-fr+f2", input="Bonjour tout le monde")) > 0.5
    assert wav_seconds(speak(tts, voice={"id": "de"}, input="Guten Tag")) > 0.3
    no_voice = httpx.post(f"{tts.base_url}/audio/speech", json={"model": "m", "input": "Hello"})
    assert wav_seconds(no_voice.content) > 0.3  # --voice-default
    pcm = speak(tts, voice="echo", response_format="pcm")
    wav = speak(tts, voice="echo", response_format="wav")
    assert len(pcm) % 2 == 0
    assert len(pcm) / 2 / 24_000 == pytest.approx(wav_seconds(wav), rel=0.01)  # 24 kHz


def test_voices_in_the_vultr_shape(tts: Worker) -> None:
    body = httpx.get(f"{tts.base_url}/audio/voices").json()
    voices = body["voices"]
    assert isinstance(voices, list) and all(isinstance(v, str) for v in voices)
    assert {"alloy", "nova", "en-us", "en-gb", "fr-fr", "de"} <= set(voices)
    assert [m.id for m in client(tts).models.list().data] == ["espeak-ng"]


def test_bad_requests_are_openai_shaped_400s(tts: Worker) -> None:
    cases: list[tuple[dict[str, object], str, str | None]] = [
        ({"voice": "klingon"}, "voice", "invalid_voice"),
        ({"voice": "en-us+nosuchvariant"}, "voice", "invalid_voice"),
        ({"response_format": "mp3"}, "response_format", "unsupported_response_format"),
        ({"speed": 9}, "speed", "invalid_value"),
        ({"input": "   "}, "input", None),
        ({"input": "x" * 501}, "input", "input_too_long"),
    ]
    for fields, param, code in cases:
        with pytest.raises(openai.BadRequestError) as caught:
            speak(tts, **fields)
        error = caught.value.body
        assert isinstance(error, dict) and error["param"] == param, (fields, error)
        assert error["code"] == code and error["type"] == "invalid_request_error"
