"""The vectors of bench/vector_search.py: ``random`` (uniform on the unit sphere) and
``sentences`` (real sentence embeddings of English sentences taken from the docstrings and
comments of the Python files installed here, the standard library's and the virtualenv's
packages; by a model whose files are already installed, nothing downloaded: WordLlama by
default, or all-MiniLM-L6-v2, the demo's model, where a CPU embeds 100,000 sentences in
reasonable time; see ``sentence_vectors``). Embeddings are kept in a cache file.
"""

from __future__ import annotations

import re
import sys
import sysconfig
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

SENTENCE = re.compile(r"[A-Z][^.!?\n]{30,200}[.!?]")
WORD = re.compile(r"[A-Za-z]{3,}")
CACHE = Path.home() / ".cache" / "gpuyard-bench"


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype("<f4")


def random_vectors(n: int, dims: int, seed: int = 11) -> np.ndarray:
    return unit(np.random.default_rng(seed).standard_normal((n, dims)))


def _python_files() -> Iterator[Path]:
    roots = {Path(sysconfig.get_paths()[k]) for k in ("stdlib", "purelib", "platlib")}
    for root in sorted(roots):
        yield from sorted(root.rglob("*.py"))


def sentences(n: int) -> list[str]:
    """``n`` distinct English sentences of the installed Python files' prose, in a fixed order."""
    seen: dict[str, None] = {}
    for path in _python_files():
        try:
            text = path.read_text(encoding="utf-8", errors="ignore")
        except OSError:
            continue
        prose = " ".join(
            line.strip().lstrip("#").strip()
            for line in text.splitlines()
            if not line.strip().startswith(("def ", "class ", "import ", "from ", "return "))
        )
        for found in SENTENCE.findall(prose):
            s = " ".join(found.split())
            words = WORD.findall(s)
            if len(words) >= 6 and len(words) * 5 > len(s) * 0.6 and "_" not in s and "=" not in s:
                seen.setdefault(s, None)
        if len(seen) >= n:
            break
    if len(seen) < n:
        raise SystemExit(f"only {len(seen):,} sentences found in the installed Python files")
    return list(seen)[:n]


def sentence_vectors(n: int, dims: int, embedder: str, cache: Path = CACHE) -> np.ndarray:
    """Unit embeddings of ``sentences(n)`` in ``dims`` dimensions. ``minilm``: all-MiniLM-L6-v2
    (384), computed once and cached (slow on a CPU); ``wordllama``: WordLlama l2_supercat (256,
    seconds for 100,000), zero-padded to ``dims`` and turned by a fixed random rotation, which
    keeps every cosine while spreading the vectors over all ``dims`` coordinates."""
    texts = sentences(n)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from gpuyard.workers.embedders import load, resolve

    path = cache / f"{embedder}-{n}.npy"
    if path.exists():
        vectors = np.load(path)
    else:
        model = load(resolve(embedder))
        started = time.perf_counter()
        parts = []
        for start in range(0, n, 2_000):
            parts.append(np.asarray(model.embed(texts[start : start + 2_000]), dtype="<f4"))
            done = start + len(parts[-1])
            if done % 20_000 == 0 or done == n:
                rate = done / (time.perf_counter() - started)
                print(f"  .. {embedder}: {done:,} of {n:,} sentences ({rate:,.0f}/s)", flush=True)
        vectors = np.concatenate(parts)
        cache.mkdir(parents=True, exist_ok=True)
        np.save(path, vectors)
    if vectors.shape[1] > dims:
        raise SystemExit(f"{embedder} gives {vectors.shape[1]} dimensions, more than {dims}")
    if vectors.shape[1] < dims:
        padded = np.zeros((n, dims), dtype="<f4")
        padded[:, : vectors.shape[1]] = vectors
        rotation, _ = np.linalg.qr(np.random.default_rng(7).standard_normal((dims, dims)))
        vectors = padded @ rotation.astype("<f4")
    return unit(vectors)
