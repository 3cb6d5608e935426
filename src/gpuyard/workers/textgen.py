"""A causal language model from a local Hugging Face directory, generating on CPU.

The directory needs ``config.json``, the weights and a tokenizer (what ``save_pretrained`` writes);
nothing is downloaded (``local_files_only``, ``HF_HUB_OFFLINE=1``). torch and transformers are
imported by ``load`` only (through ``importlib``: neither ``gpuyard --help`` nor mypy reads them).

Chat prompts use the tokenizer's chat template when it has one; otherwise this fallback, which a
base model continues sensibly:

    System: {content}

    User: {content}

    Assistant: {content}

    …
    Assistant:
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("gpuyard.workers")

DEFAULT_CONTEXT_LENGTH = 2048
_FALLBACK_ROLES = {
    "system": "System",
    "developer": "System",
    "user": "User",
    "assistant": "Assistant",
}


class PromptRejected(ValueError):
    """The tokenizer's chat template refused the messages (the message says why)."""


class GenerationCancelled(Exception):
    """Raised from the token callback to stop ``generate`` early."""


@dataclass(frozen=True)
class Sampling:
    max_new_tokens: int
    temperature: float = 1.0
    """0 means greedy decoding."""
    top_p: float = 1.0
    top_k: int = 0
    """0 means no top-k cut."""
    seed: int | None = None
    """Reseeds torch before generating, for a reproducible answer; ``None``: no reseeding."""


def fallback_prompt(messages: Sequence[dict[str, str]]) -> str:
    """The documented prompt for a tokenizer without a chat template."""
    turns = [f"{_FALLBACK_ROLES[m['role']]}: {m['content']}" for m in messages]
    return "\n\n".join([*turns, "Assistant:"])


class _TokenSink:
    """What ``generate(streamer=…)`` calls: the prompt first (skipped), then each new token."""

    def __init__(self, on_token: Callable[[int], None]) -> None:
        self._on_token = on_token
        self._prompt_seen = False

    def put(self, value: Any) -> None:
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        for token in value.reshape(-1).tolist():
            self._on_token(int(token))

    def end(self) -> None:
        pass


class TextGenerator:
    """A loaded model and tokenizer. ``generate`` runs one request at a time (a lock), since a
    CPU generation already uses every core."""

    def __init__(self, model: Any, tokenizer: Any, torch: Any) -> None:
        self._model = model
        self._tokenizer = tokenizer
        self._torch = torch
        self._lock = threading.Lock()
        self.has_chat_template = bool(getattr(tokenizer, "chat_template", None))
        self.context_length = _context_length(model.config, tokenizer)
        self.eos_token_ids = _eos_ids(model, tokenizer)
        self._pad_id = tokenizer.pad_token_id
        if self._pad_id is None and self.eos_token_ids:
            self._pad_id = min(self.eos_token_ids)

    def chat_prompt(self, messages: Sequence[dict[str, str]]) -> list[int]:
        if not self.has_chat_template:
            return self.encode(fallback_prompt(messages), special_tokens=True)
        try:
            text = self._tokenizer.apply_chat_template(
                list(messages), add_generation_prompt=True, tokenize=False
            )
        except Exception as exc:  # jinja's TemplateError and whatever a template raises
            raise PromptRejected(f"the model's chat template rejected the messages: {exc}") from exc
        return self.encode(str(text), special_tokens=False)  # the template wrote them

    def encode(self, text: str, *, special_tokens: bool = True) -> list[int]:
        ids = self._tokenizer(text, add_special_tokens=special_tokens)["input_ids"]
        return [int(token) for token in ids]

    def decode(self, ids: Sequence[int]) -> str:
        return str(self._tokenizer.decode(list(ids), skip_special_tokens=True))

    def generate(
        self,
        prompt_ids: list[int],
        sampling: Sampling,
        on_token: Callable[[int], None],
        cancelled: threading.Event,
    ) -> None:
        """Generate, calling ``on_token`` with each new token id (EOS included) in this thread.
        ``on_token`` may raise ``GenerationCancelled`` to stop; so does ``cancelled``."""
        torch = self._torch
        with self._lock:
            if cancelled.is_set():
                return
            if sampling.seed is not None:
                torch.manual_seed(sampling.seed)
            input_ids = torch.tensor([prompt_ids], dtype=torch.long)
            options: dict[str, Any] = {
                "max_new_tokens": sampling.max_new_tokens,
                "pad_token_id": self._pad_id,
                "streamer": _TokenSink(on_token),
            }
            if sampling.temperature > 0:
                options.update(
                    do_sample=True,
                    temperature=sampling.temperature,
                    top_p=sampling.top_p,
                    top_k=sampling.top_k,
                )
            else:
                options.update(do_sample=False, temperature=None, top_p=None, top_k=None)
            try:
                with torch.inference_mode():
                    self._model.generate(
                        input_ids=input_ids,
                        attention_mask=torch.ones_like(input_ids),
                        **options,
                    )
            except GenerationCancelled:
                pass


def _context_length(config: Any, tokenizer: Any) -> int:
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and 0 < limit < 1_000_000:
        return limit
    return DEFAULT_CONTEXT_LENGTH


def _eos_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    ids: set[int] = set()
    for source in (getattr(model, "generation_config", None), model.config, tokenizer):
        value = getattr(source, "eos_token_id", None)
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, list | tuple):
            ids.update(int(v) for v in value)
    return frozenset(ids)


def missing_modules() -> list[str]:
    """The libraries ``load`` needs that are not installed."""
    return [name for name in ("torch", "transformers") if importlib.util.find_spec(name) is None]


def load(path: Path, *, threads: int | None = None) -> TextGenerator:
    """Load the model directory at ``path`` for CPU inference (seconds; run it off the loop)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    torch = importlib.import_module("torch")
    transformers = importlib.import_module("transformers")
    transformers.logging.disable_progress_bar()
    if threads:
        torch.set_num_threads(threads)
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    model = transformers.AutoModelForCausalLM.from_pretrained(
        str(path), local_files_only=True, dtype=torch.float32
    )
    model.eval()
    generator = TextGenerator(model, tokenizer, torch)
    log.info(
        "chat model %s: context %d tokens, %s",
        path,
        generator.context_length,
        "chat template from the tokenizer" if generator.has_chat_template else "fallback prompt",
    )
    return generator
