"""Text cut into chunks for embedding: about ``size`` characters each, cut at a paragraph, else
a sentence, else a space, with ``overlap`` characters repeated so that a sentence cut in two is
still whole in one of them."""

from __future__ import annotations

import re

CHUNK_CHARS = 1_000
OVERLAP_CHARS = 100
_CUTS = ("\n\n", "\n", ". ", " ")


def normalised(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    text = re.sub(r"[ \t\f\v]+", " ", text)
    return re.sub(r"\n\s*\n+", "\n\n", text).strip()


def chunks(text: str, *, size: int = CHUNK_CHARS, overlap: int = OVERLAP_CHARS) -> list[str]:
    text = normalised(text)
    out: list[str] = []
    start = 0
    while start < len(text):
        end = min(start + size, len(text))
        if end < len(text):
            window = text[start:end]
            for cut in _CUTS:
                at = window.rfind(cut)
                if at > size // 2:
                    end = start + at + len(cut)
                    break
        piece = text[start:end].strip()
        if piece:
            out.append(piece)
        if end >= len(text):
            break
        start = max(end - overlap, start + 1)
    return out
