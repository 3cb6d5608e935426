"""Packing 16-bit mono samples into the response formats the tts worker offers.

``wav``: a RIFF/WAVE file at the synthesiser's own rate. ``pcm``: raw signed 16-bit little-endian
mono at 24 kHz, the rate OpenAI documents for ``pcm`` (resampled linearly). The compressed
formats (mp3, opus, aac, flac) would need an encoder this worker does not bring: they are a 400.
"""

from __future__ import annotations

import importlib
import io
import wave

FORMATS = {"wav": "audio/wav", "pcm": "audio/pcm"}
PCM_RATE = 24_000


def to_wav(samples: bytes, rate: int) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples)
    return buffer.getvalue()


def resample(samples: bytes, rate: int, target: int) -> bytes:
    """Linear interpolation from ``rate`` to ``target`` Hz (16-bit little-endian mono)."""
    if rate == target or not samples:
        return samples
    np = importlib.import_module("numpy")
    source = np.frombuffer(samples, dtype="<i2").astype(np.float32)
    count = max(1, round(len(source) * target / rate))
    positions = np.arange(count, dtype=np.float64) * (rate / target)
    resampled = np.interp(positions, np.arange(len(source)), source)
    return bytes(np.clip(np.rint(resampled), -32768, 32767).astype("<i2").tobytes())


def encode(samples: bytes, rate: int, response_format: str) -> bytes:
    if response_format == "wav":
        return to_wav(samples, rate)
    if response_format == "pcm":
        return resample(samples, rate, PCM_RATE)
    raise ValueError(f"unsupported response format {response_format!r}")
