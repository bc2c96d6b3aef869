"""scripts/train_gpt.py at a tiny size: it trains, writes loadable files, and is deterministic."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from lmlab.io import read_metadata
from lmlab.model_files import load_model
from lmlab.tokenization import BPETokenizer
from lmlab.transformer import GPT, EncoderDecoder

TINY = ["--steps", "30", "--d-model", "32", "--num-layers", "1", "--num-heads", "2",
        "--context-length", "32", "--vocab-size", "300", "--batch-size", "8", "--log-every", "10",
        "--eval-windows", "4", "--threads", "1"]




def test_train_gpt_script_trains_and_is_deterministic(tmp_path: Path,
                                                      load_script) -> None:
    script = load_script("scripts/train_gpt.py")
    threads = torch.get_num_threads()
    try:
        paths = script.main(["--out", str(tmp_path / "a"), *TINY])
        again = script.main(["--out", str(tmp_path / "b"), *TINY])
    finally:
        torch.set_num_threads(threads)
    assert [p.name for p in paths] == ["gpt_shakespeare.safetensors", "encdec_g2p.safetensors"]
    for first, second in zip(paths, again):
        a, b = load_model(first), load_model(second)
        for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
            assert torch.equal(x, y), name
    gpt, encdec = load_model(paths[0]), load_model(paths[1])
    assert isinstance(gpt, GPT) and isinstance(encdec, EncoderDecoder)
    meta = read_metadata(paths[0])
    curve = json.loads(meta["loss_curve"])
    assert len(curve) == 3 and curve[-1] < curve[0] - 0.3  # it learns
    assert len(json.loads(meta["validation_plays"])) == 3
    assert 0 < float(meta["validation_loss"]) < curve[0]
    tok = BPETokenizer.from_file(tmp_path / "a" / "gpt_shakespeare.bpe.json")
    assert tok.vocab_size == gpt.config.vocab_size == 300
    assert tok.decode(tok.encode("To be, or not to be")) == "To be, or not to be"
    g2p_curve = json.loads(read_metadata(paths[1])["loss_curve"])
    assert g2p_curve[-1] < g2p_curve[0]


def test_shakespeare_split_is_disjoint_and_fixed(load_script) -> None:
    script = load_script("scripts/train_gpt.py")
    train, val = script.shakespeare_split()
    assert len(train) + len(val) == 38 and len(val) == 3
    assert not {t for t, _ in train} & {t for t, _ in val}
    assert [t for t, _ in val] == [t for t, _ in script.shakespeare_split()[1]]
