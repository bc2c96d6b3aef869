"""scripts/residual_experiment.py: a tiny run writes the file chapter 6 reads, and the
committed file is what the script's default command makes (checked at initialisation, where
a run is cheap)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "book" / "checkpoints" / "residual_experiment.json"


@pytest.fixture
def script(load_script):
    return load_script("scripts/residual_experiment.py")


def test_a_tiny_run_writes_every_variant_and_seed(script, tmp_path) -> None:
    out = tmp_path / "r.json"
    result = script.main(["--layers", "2", "--d-model", "16", "--context", "16", "--batch",
                          "2", "--steps", "3", "--seeds", "0", "1", "--out", str(out)])
    assert json.loads(out.read_text()) == result
    assert [(r["variant"], r["seed"]) for r in result["runs"]] == [
        (v, s) for v in script.VARIANTS for s in (0, 1)]
    for r in result["runs"]:
        assert len(r["grad_norms"]) == 2 and len(r["train_loss"]) == 3
        assert all(math.isfinite(x) for x in [*r["train_loss"], r["val_loss"]])
    V = result["vocab_size"]
    assert result["uniform_loss"] == pytest.approx(math.log(V))
    assert 2.0 < result["unigram_loss"] < result["uniform_loss"]  # frequencies help
    assert result["settings"]["layers"] == 2 and "out" not in result["settings"]


def test_unigram_loss_is_the_cross_entropy_of_the_frequencies(script) -> None:
    train = torch.tensor([0, 0, 0, 1])  # counts + 1: 4 and 2 of 6 (and 1 for id 2)
    val = torch.tensor([0, 1])
    expected = -(math.log(4 / 7) + math.log(2 / 7)) / 2
    assert script.unigram_loss(train, val, 3) == pytest.approx(expected)


def test_the_variants_are_the_config_switches(script) -> None:
    make = dict(num_layers=2, d_model=16, context_length=8, seed=0)
    assert script.make_model("no residual", 81, **make).config.residual is False
    no_norms = script.make_model("residual, no block norms", 81, **make)
    assert not no_norms.config.block_norms and no_norms.norm is not None  # final norm stays


def test_bad_arguments_are_refused(script) -> None:
    for argv in (["--layers", "0"], ["--d-model", "30"], ["--lr", "0"],
                 ["--variants", "plain"]):
        with pytest.raises(SystemExit):
            script.parse_args(argv)


def test_the_committed_file_is_the_default_command(script) -> None:
    committed = json.loads(COMMITTED.read_text())
    defaults = {k: v for k, v in vars(script.parse_args([])).items() if k != "out"}
    assert committed["settings"] == defaults
    assert committed["command"] == "python scripts/residual_experiment.py"
    assert [(r["variant"], r["seed"]) for r in committed["runs"]] == [
        (v, s) for v in script.VARIANTS for s in defaults["seeds"]]
    assert all(len(r["train_loss"]) == defaults["steps"] for r in committed["runs"])
    train_ids, val_ids, chars = script.characters()
    assert committed["vocab_size"] == len(chars)
    assert committed["unigram_loss"] == pytest.approx(
        script.unigram_loss(train_ids, val_ids, len(chars)), rel=1e-9)
    # the gradients at initialisation, recomputed for one seed of each variant
    args = script.parse_args([])
    x, y = script.random_windows(train_ids, args.batch, args.context,
                                 torch.Generator().manual_seed(script.INIT_BATCH_SEED))
    for run in committed["runs"][::len(defaults["seeds"])]:
        model = script.make_model(run["variant"], len(chars), num_layers=args.layers,
                                  d_model=args.d_model, context_length=args.context,
                                  seed=run["seed"])
        grads = script.block_gradient_norms(model, x, y)
        assert grads == pytest.approx(run["grad_norms"], rel=1e-3, abs=1e-9)
