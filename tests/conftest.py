"""Shared test set-up: the ``gpu`` marker skips where no CUDA or MPS device is present; the
``one_thread`` fixture runs a test on one PyTorch thread; ``load_script`` imports a script of
``scripts/`` or ``benchmarks/`` as a module; ``smol_gguf`` and ``gguf_hf_tok`` are SmolLM2's GGUF
file and transformers' tokenizer read from it (the reference of the GGUF tests)."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
import torch

from lmlab.device import get_device


def _has_gpu() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return torch.cuda.is_available() or bool(mps is not None and mps.is_available())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _has_gpu():
        return
    skip = pytest.mark.skip(reason="needs a CUDA or MPS device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def gpu_device() -> torch.device:
    """The accelerator a ``gpu`` test runs on (cuda first, then mps)."""
    device = get_device()
    assert device.type in ("cuda", "mps")
    return device


@pytest.fixture
def one_thread():
    """Tiny matrices: one thread is as fast, and does not fight other processes for the cores.
    The caller's thread count is restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def load_script() -> Callable[[str], ModuleType]:
    """``load_script("scripts/train_gpt.py")``: the script as a module, its folder importable
    while it loads (benchmarks import each other)."""
    def load(relative: str) -> ModuleType:
        path = ROOT / relative
        sys.path.insert(0, str(path.parent))
        try:
            spec = importlib.util.spec_from_file_location(path.stem, path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        finally:
            sys.path.remove(str(path.parent))
        return module
    return load


@pytest.fixture(scope="session")
def smol_gguf():
    """SmolLM2-135M-Instruct's GGUF file (lmlab.gguf_file.GGUFFile)."""
    from lmlab.gguf_file import GGUFFile, smollm2_gguf_file

    return GGUFFile(smollm2_gguf_file())


@pytest.fixture(scope="session")
def gguf_hf_tok(smol_gguf):
    """transformers' tokenizer built from the same GGUF file (the reference)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(smol_gguf.path.parent), gguf_file=smol_gguf.path.name)
