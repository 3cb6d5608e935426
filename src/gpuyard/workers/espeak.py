"""The eSpeak NG speech synthesiser through its C library (``ctypes``), no subprocess.

The library comes from the ``espeakng-loader`` wheel (``libespeak-ng.so`` plus its data, so
``pip install`` is enough), else from the system (``apt-get install libespeak-ng1``). eSpeak keeps
global state and is not thread-safe: create one ``Espeak`` per process and call it from one thread.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib
import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("gpuyard.workers")

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_RATE = 1
_PROBE_TEXT = b"hello"
_PROBE_MIN_SAMPLES = 1000

MIN_RATE_WPM = 80
MAX_RATE_WPM = 450
DEFAULT_RATE_WPM = 175

_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


class EspeakMissing(RuntimeError):
    """Neither the espeakng-loader wheel nor a system libespeak-ng is installed."""


class _Voice(ctypes.Structure):
    _fields_ = (
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_void_p),  # (priority byte, language, NUL)*, then a 0 byte
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    )


@dataclass(frozen=True)
class Voice:
    language: str
    """The voice's public name: its first language code, lower case (``en-us``, ``fr-fr``)."""
    name: str
    """eSpeak's display name (``English (America)``)."""
    identifier: str
    """eSpeak's voice file (``gmw/en-US``), what ``espeak_SetVoiceByName`` takes."""


def locate_library() -> tuple[str, str | None]:
    """The shared library and its data directory (``None``: the library's compiled-in default)."""
    if importlib.util.find_spec("espeakng_loader") is not None:
        loader: Any = importlib.import_module("espeakng_loader")
        return str(loader.get_library_path()), str(loader.get_data_path())
    system = ctypes.util.find_library("espeak-ng")
    if system:
        return system, None
    raise EspeakMissing(
        "no eSpeak NG library: install the workers extra (pip install 'gpuyard[workers]', "
        "which brings espeakng-loader) or the system package libespeak-ng1"
    )


class Espeak:
    """One initialised eSpeak NG: its voices and ``synthesize``. Not thread-safe."""

    def __init__(self, library: str, data_dir: str | None) -> None:
        lib = ctypes.CDLL(library)
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_ListVoices.argtypes = [ctypes.c_void_p]
        lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_Voice))
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        path = data_dir.encode() if data_dir else None
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, path, _INITIALIZE_DONT_EXIT)
        if rate <= 0:
            raise RuntimeError(f"espeak_Initialize failed ({rate}) with data in {data_dir}")
        self._lib = lib
        self.sample_rate: int = rate
        self._chunks: list[bytes] = []
        self._callback = _SynthCallback(self._collect)  # kept alive as long as the library
        lib.espeak_SetSynthCallback(self._callback)
        self.variants = _variants(data_dir)
        self.voices = self._working_voices()

    def _collect(self, wav: Any, samples: int, _events: Any) -> int:
        if samples > 0 and wav:
            self._chunks.append(ctypes.string_at(wav, samples * 2))
        return 0

    def _listed_voices(self) -> list[Voice]:
        listed = self._lib.espeak_ListVoices(None)
        voices: list[Voice] = []
        seen: set[str] = set()
        index = 0
        while listed[index]:
            entry = listed[index].contents
            index += 1
            language = ctypes.string_at(entry.languages + 1).decode().lower()
            if not language or language in seen:
                continue
            seen.add(language)
            voices.append(
                Voice(language, (entry.name or b"").decode(), (entry.identifier or b"").decode())
            )
        return voices

    def _working_voices(self) -> dict[str, Voice]:
        """Voices that speak: a build may list voices whose dictionary it does not ship (eSpeak
        then prints "Can't read dictionary file" once for each)."""
        working: dict[str, Voice] = {}
        silent: list[str] = []
        for voice in self._listed_voices():
            if len(self._synth(_PROBE_TEXT, voice.identifier, DEFAULT_RATE_WPM)) // 2 >= (
                _PROBE_MIN_SAMPLES
            ):
                working[voice.language] = voice
            else:
                silent.append(voice.language)
        if silent:
            log.info("espeak-ng voices left out (no dictionary in this build): %s", silent)
        return working

    def _synth(self, text: bytes, voice: str, rate_wpm: int) -> bytes:
        if self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"eSpeak has no voice {voice!r}")
        self._lib.espeak_SetParameter(_RATE, rate_wpm, 0)
        self._chunks = []
        status = self._lib.espeak_Synth(
            text, len(text) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None
        )
        if status != 0:
            raise RuntimeError(f"espeak_Synth failed ({status})")
        audio = b"".join(self._chunks)
        self._chunks = []
        return audio

    def synthesize(self, text: str, *, voice: str, rate_wpm: int = DEFAULT_RATE_WPM) -> bytes:
        """Mono signed 16-bit little-endian samples at ``sample_rate``. ``voice`` is a language
        code from ``voices`` with an optional ``+variant`` (``en-us+f3``)."""
        base, _, variant = voice.partition("+")
        known = self.voices[base]
        spec = f"{known.identifier}+{variant}" if variant else known.identifier
        rate = max(MIN_RATE_WPM, min(MAX_RATE_WPM, rate_wpm))
        return self._synth(text.encode("utf-8"), spec, rate)


def _variants(data_dir: str | None) -> frozenset[str] | None:
    """The voice variants (``f3``, ``m1``, ``klatt``…) of the data directory; ``None`` when the
    library uses its built-in path (then any variant name is passed through)."""
    if data_dir is None:
        return None
    folder = Path(data_dir) / "voices" / "!v"
    if not folder.is_dir():
        return None
    return frozenset(entry.name for entry in folder.iterdir() if entry.is_file())


def load() -> Espeak:
    return Espeak(*locate_library())
