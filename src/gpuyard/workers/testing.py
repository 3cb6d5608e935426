"""A tiny random-weight chat model, built offline, for tests and demos of ``gpuyard worker chat``.

``make_tiny_model(DIR)`` (or ``gpuyard worker make-tiny-model DIR``) writes a Hugging Face model
directory of about 400 KB, in a fraction of a second once torch is imported: a 2-layer Llama
(hidden size 64, a context of 256 tokens) with random weights, and a byte-level BPE tokenizer
trained on a few sentences with the ``tokenizers`` library, carrying a ChatML chat template. It
speaks gibberish, fast, through exactly the code paths of a real model. Needs torch, transformers
and tokenizers; downloads nothing.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

CONTEXT_LENGTH = 256
VOCAB_SIZE = 512
END_OF_TEXT = "<|endoftext|>"
TURN_START = "<|im_start|>"
TURN_END = "<|im_end|>"

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_CORPUS = (
    "gpuyard is a self-hostable GPU cloud with a marketplace, inference clusters and "
    "serverless endpoints.",
    "The quick brown fox jumps over the lazy dog while the cat sleeps on the warm mat.",
    "Hello! How are you today? I am fine, thank you, and you?",
    "A tiny model for tests answers quickly, speaks gibberish, and downloads nothing at all.",
    "Embeddings, chat completions and speech are served by small workers on the CPU.",
)


def _train_tokenizer(tokenizers: Any) -> Any:
    tokenizer = tokenizers.Tokenizer(tokenizers.models.BPE())
    tokenizer.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=[END_OF_TEXT, TURN_START, TURN_END],
        initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(list(_CORPUS) * 4, trainer)
    return tokenizer


def make_tiny_model(directory: Path, *, seed: int = 0, chat_template: bool = True) -> Path:
    """Write the tiny model into ``directory`` (created; must be empty if it exists) and return
    it. The same ``seed`` gives the same weights. ``chat_template=False`` leaves the template out
    (the worker then uses its fallback prompt)."""
    directory = Path(directory)
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise FileExistsError(f"{directory} exists and is not an empty directory")
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    tokenizers = importlib.import_module("tokenizers")
    torch = importlib.import_module("torch")
    transformers = importlib.import_module("transformers")
    transformers.logging.disable_progress_bar()

    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=_train_tokenizer(tokenizers),
        eos_token=TURN_END,
        pad_token=END_OF_TEXT,
    )
    if chat_template:
        tokenizer.chat_template = CHATML_TEMPLATE
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=CONTEXT_LENGTH,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = transformers.LlamaForCausalLM(config)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(directory))
    tokenizer.save_pretrained(str(directory))
    return directory
