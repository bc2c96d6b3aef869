"""scripts/train_rnn_attention.py's seed study (--seeds) at a tiny size: one run per seed and
model, figures equal to training and scoring that model by hand, the same file on a second run,
and bad arguments refused before any training; --merge joins studies as one run would. (The
checkpoint mode is tested in tests/test_seq2seq.py.)"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from lmlab import g2p, seq2seq
from lmlab.device import seed_everything

TINY = ["--steps", "3", "--batch-size", "4", "--hidden-size", "8", "--d-model", "8",
        "--test-words", "20", "--threads", "1", "--device", "cpu"]


@pytest.fixture
def script(load_script):
    return load_script("scripts/train_rnn_attention.py")


def test_seed_study_records_every_seed_and_model(script, tmp_path: Path) -> None:
    [path] = script.main(["--seeds", "3", "1", *TINY, "--out", str(tmp_path)])
    assert path == tmp_path / "g2p_seeds.json"
    study = json.loads(path.read_text())
    assert study["budget"] == {"steps": 3, "batch_size": 4, "lr": 3e-3, "hidden_size": 8,
                               "d_model": 8, "seeds": [3, 1], "test_words": 20,
                               "script": "scripts/train_rnn_attention.py"}
    runs = study["runs"]
    assert [(r["seed"], r["model"]) for r in runs] == [
        (3, "rnn"), (3, "attention"), (3, "rnn_matched"),
        (1, "rnn"), (1, "attention"), (1, "rnn_matched")]
    test = g2p.cmudict_splits()["test"]
    stride = len(test) // 20
    for r in runs:
        config = script.make_config(r["model"], 8, 8)
        assert r["parameters"] == script.parameter_count(config)
        assert r["n"] == len(test[::stride]) and 0 <= r["n_long"] <= r["n"]
        for key in ("word_accuracy", "long_word_accuracy"):
            assert 0 <= r[key] <= 1
        assert r["per"] >= 0 and math.isfinite(r["final_loss"])
    # the seed changes the weights and the batches, so the two seeds' losses differ
    assert runs[0]["final_loss"] != runs[3]["final_loss"]
    # one run re-made by hand: same seed, same training, same scoring
    config = script.make_config("attention", 8, 8)
    seed_everything(1)
    model = seq2seq.Seq2Seq(config)
    losses = seq2seq.train_seq2seq(model, g2p.cmudict_splits()["train"], steps=3, batch_size=4,
                                   lr=3e-3, seed=1, device="cpu")
    scores = g2p.evaluate(model.eval(), test[::stride], references=g2p.cmudict_pronunciations())
    by_hand = runs[4]
    assert by_hand["final_loss"] == round(sum(losses) / len(losses), 4)
    for key in ("word_accuracy", "per", "long_word_accuracy", "long_per"):
        assert by_hand[key] == round(float(scores[key]), 5), key


def test_seed_study_is_deterministic_and_merging_equals_one_run(script, tmp_path: Path) -> None:
    both = script.main(["--seeds", "0", "2", *TINY, "--out", str(tmp_path / "both")])[0]
    zero = script.main(["--seeds", "0", *TINY, "--out", str(tmp_path / "zero")])[0]
    two = script.main(["--seeds", "2", *TINY, "--out", str(tmp_path / "two")])[0]
    merged = script.main(["--merge", str(zero), str(two), "--out", str(tmp_path / "m")])[0]
    assert merged.read_bytes() == both.read_bytes()
    with pytest.raises(ValueError, match="seed\\(s\\) \\[0\\] already in an earlier file"):
        script.main(["--merge", str(zero), str(both), "--out", str(tmp_path / "x")])
    other = script.main(["--seeds", "1", *TINY[:-6], "--test-words", "10", "--threads", "1",
                         "--out", str(tmp_path / "other")])[0]
    with pytest.raises(ValueError, match="other/g2p_seeds.json: budget .* differs"):
        script.main(["--merge", str(zero), str(other), "--out", str(tmp_path / "x")])
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="list.json: not a seed study"):
        script.main(["--merge", str(zero), str(tmp_path / "list.json"),
                     "--out", str(tmp_path / "x")])
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").iterdir())


@pytest.mark.parametrize("args, message", [
    (["--seeds", "-1"], "--seeds must be distinct and >= 0"),
    (["--seeds", "1", "1"], "--seeds must be distinct and >= 0"),
    (["--seeds", "0", "--test-words", "-5"], "--test-words must be >= 0"),
    (["--seeds", "0", "--steps", "0"], "--steps must be >= 1"),
    (["--seeds", "0", "--merge", "a.json"], "--merge and --seeds: give one of them"),
])
def test_bad_arguments_are_refused_before_training(script, tmp_path: Path, capsys, args,
                                                   message) -> None:
    with pytest.raises(SystemExit):
        script.main([*args, "--out", str(tmp_path / "out")])
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
