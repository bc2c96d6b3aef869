"""Tests of lmlab.g2p: CMUdict splits, transcription with the model's own vocabularies, scoring,
and g2p_en's checkpoint against g2p_en's own NumPy code."""

from __future__ import annotations

import ast
import importlib.util
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lmlab import g2p
from lmlab.vocab import Vocabulary
from lmlab.device import seed_everything
from lmlab.progress import set_progress
from lmlab.seq2seq import Seq2Seq, Seq2SeqConfig

set_progress(False)
pytestmark = pytest.mark.usefixtures("one_thread")

WORDS = ["attention", "spelling", "pronunciation", "onomatopoeia", "xylophone", "a", "qwrtzp",
         "internationalization", "mississippi", "zzz", "through", "antidisestablishmentarianism"]


@pytest.fixture(scope="module")
def g2p_en() -> Seq2Seq:
    return g2p.load_g2p_en()


# --------------------------------------------------------------------------- data


def test_vocabularies() -> None:
    src, tgt = g2p.GRAPHEME_VOCAB, g2p.PHONEME_VOCAB
    assert src.encode(list("cab"), add_special_tokens=True) == [5, 3, 4, 2]
    ids = tgt.encode(["K", "AE1", "B"], add_special_tokens=True)
    assert ids[0] == tgt.bos_id == 2 and ids[-1] == tgt.eos_id == 3
    assert tgt.decode(ids + [0, 0]) == ["K", "AE1", "B"]
    assert len(src) == 29 and len(tgt) == 74
    with pytest.raises(ValueError, match=r"\['1', '\?'\] not in the vocabulary"):
        src.encode(list("a1?"))


def test_cmudict_splits_deterministic_and_disjoint() -> None:
    a, b = g2p.cmudict_splits(), g2p.cmudict_splits()
    assert a == b
    words = {k: {w for w, _ in v} for k, v in a.items()}
    assert not (words["train"] & words["test"]) and not (words["train"] & words["validation"])
    assert not (words["validation"] & words["test"])
    total = sum(len(v) for v in a.values())
    assert total > 110_000
    assert abs(len(a["test"]) / total - 0.1) < 0.001
    assert all(w.isalpha() and w.islower() for w in words["test"])
    assert g2p.cmudict_splits(seed=1)["test"] != a["test"]


def test_cmudict_pronunciations_lists_every_variant_first_one_first() -> None:
    from lmlab.data import load_cmudict

    every = g2p.cmudict_pronunciations()
    first = dict(load_cmudict())
    assert every["either"][0] == first["either"] and len(every["either"]) >= 2
    split = g2p.cmudict_splits()
    assert all(every[w][0] == p for w, p in split["test"][::50])
    several = sum(len(v) > 1 for v in every.values()) / len(every)
    assert 0.03 < several < 0.2


@pytest.mark.parametrize("kwargs, error, match", [
    ({"test_fraction": 0.7}, ValueError, "test_fraction"),
    ({"test_fraction": float("nan")}, ValueError, "test_fraction"),
    ({"validation_fraction": 0.0}, ValueError, "validation_fraction"),
    ({"validation_fraction": "0.1"}, TypeError, "validation_fraction"),
    ({"seed": -1}, ValueError, "seed"),
    ({"seed": 1.0}, TypeError, "seed"),
])
def test_cmudict_splits_bad_input(kwargs, error, match) -> None:
    with pytest.raises(error, match=f"^{match}"):
        g2p.cmudict_splits(**kwargs)


# --------------------------------------------------------------------------- transcribe


def test_transcribe_uses_the_models_own_vocabularies() -> None:
    """A model over other symbols: transcribe names its outputs with the model's tgt_vocab."""
    src = Vocabulary(("<pad>", "</s>", "x", "y"), pad_token="<pad>", eos_token="</s>")
    tgt = Vocabulary(("<s>", "</s>", "<pad>", "LO", "HI"), pad_token="<pad>", bos_token="<s>",
                     eos_token="</s>")
    seed_everything(0)
    model = Seq2Seq(Seq2SeqConfig.tiny(src, tgt)).eval()
    with torch.no_grad():
        model.decoder.out.bias.copy_(torch.tensor([-50.0, -50.0, -50.0, -50.0, 50.0]))
    assert g2p.transcribe(model, ["xy", "y"], max_len=3) == [("HI",) * 3, ("HI",) * 3]
    with pytest.raises(ValueError, match=r"^words\[0\]"):
        g2p.transcribe(model, ["ab"])  # letters outside the model's source vocabulary


def test_transcribe_batches_do_not_change_the_answer(g2p_en: Seq2Seq) -> None:
    assert g2p.transcribe(g2p_en, WORDS, batch_size=1) == g2p.transcribe(g2p_en, WORDS)


def test_beam_one_equals_greedy_on_trained_g2p(g2p_en: Seq2Seq) -> None:
    ids = g2p_en.beam_search(*g2p.encode_words(WORDS), beam_size=1)
    assert g2p.transcribe(g2p_en, WORDS, beam_size=1) == [
        tuple(g2p.PHONEME_VOCAB.decode(s)) for s in ids]


# --------------------------------------------------------------------------- metrics


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from("ABCD"), max_size=8), st.lists(st.sampled_from("ABCD"), max_size=8))
def test_edit_distance_matches_nltk(a: list[str], b: list[str]) -> None:
    from nltk.metrics.distance import edit_distance as nltk_edit_distance

    assert g2p.edit_distance(a, b) == nltk_edit_distance(a, b)


def test_evaluate_counts_exact_words_and_errors(g2p_en: Seq2Seq) -> None:
    pairs = [("cat", ("K", "AE1", "T")), ("internationalization", ("X",))]
    scores = g2p.evaluate(g2p_en, pairs)
    hyp = scores["predictions"][1]
    assert scores["predictions"][0] == ("K", "AE1", "T")
    assert scores["word_accuracy"] == 0.5 and scores["long_word_accuracy"] == 0.0
    assert scores["per"] == pytest.approx(len(hyp) / 4)  # 'X' is never right: len(hyp) edits
    assert scores["by_length"][3] == {"n": 1, "word_accuracy": 1.0, "per": 0.0}


def test_evaluate_accepts_any_listed_pronunciation(g2p_en: Seq2Seq) -> None:
    said = g2p.transcribe(g2p_en, ["either", "cat"])
    wrong = ("IH1", "DH", "ER0")
    pairs = [("either", wrong), ("cat", ("K", "AA1", "T"))]
    alone = g2p.evaluate(g2p_en, pairs)
    assert alone["word_accuracy"] == 0.0
    listed = g2p.evaluate(g2p_en, pairs, references={"either": [wrong, said[0]]})
    assert listed["word_accuracy"] == 0.5  # 'either' matches its second listed pronunciation
    assert listed["per"] == pytest.approx(1 / (len(said[0]) + 3))  # cat: one substitution


def test_evaluate_refuses_pronunciations_as_strings(g2p_en: Seq2Seq) -> None:
    """Issue 8: a pronunciation given as a string used to be compared letter by letter."""
    with pytest.raises(TypeError, match=r"^pairs\[0\]\[1\]: expected a list or tuple of phonemes"):
        g2p.evaluate(g2p_en, [("cat", "K AE1 T")])
    with pytest.raises(TypeError, match=r"^references\['cat'\]\[0\]"):
        g2p.evaluate(g2p_en, [("cat", ("K", "AE1", "T"))], references={"cat": ["K AE1 T"]})


def test_transcribe_refuses_a_negative_batch_size(g2p_en: Seq2Seq) -> None:
    """Issue 8: batch_size=-1 used to return () for every word."""
    for bad in (-1, 0):
        with pytest.raises(ValueError, match="^batch_size"):
            g2p.transcribe(g2p_en, ["cat"], batch_size=bad)


M = g2p.load_g2p_en()


@pytest.mark.parametrize("call, error, match", [
    (lambda: g2p.transcribe(M, [""]), ValueError, r"words\[0\]"),
    (lambda: g2p.transcribe(M, ["héllo"]), ValueError, r"words\[0\]"),
    (lambda: g2p.transcribe(M, ["Hello"]), ValueError, r"words\[0\]"),
    (lambda: g2p.encode_words(["cat", "c4t"]), ValueError, r"words\[1\]: tokens: \[.4.\]"),
    (lambda: g2p.transcribe(M, "hello"), TypeError, "words"),
    (lambda: g2p.transcribe(M, []), ValueError, "words"),
    (lambda: g2p.transcribe(M, ["a", 3]), TypeError, r"words\[1\]"),
    (lambda: g2p.transcribe(M, ["a"], beam_size=0), ValueError, "beam_size"),
    (lambda: g2p.transcribe(M, ["a"], max_len=1.5), TypeError, "max_len"),
    (lambda: g2p.transcribe(M, ["a"], batch_size=10.0), TypeError, "batch_size"),
    (lambda: g2p.transcribe("model", ["a"]), TypeError, "model"),
    (lambda: g2p.encode_words([]), ValueError, "words"),
    (lambda: g2p.encode_words("abc"), TypeError, "words"),
    (lambda: g2p.edit_distance("abc", ["a"]), TypeError, "a"),
    (lambda: g2p.edit_distance(["a"], None), TypeError, "b"),
    (lambda: g2p.evaluate(M, []), ValueError, "pairs"),
    (lambda: g2p.evaluate(M, "cat"), TypeError, "pairs"),
    (lambda: g2p.evaluate(M, [("cat",)]), TypeError, r"pairs\[0\]"),
    (lambda: g2p.evaluate(M, [("cat", ())]), ValueError, r"pairs\[0\]\[1\]"),
    (lambda: g2p.evaluate(M, [("cat", ("K", 1))]), TypeError, r"pairs\[0\]\[1\]\[1\]"),
    (lambda: g2p.evaluate(M, [("cat", ("K",))], long_from=0), ValueError, "long_from"),
    (lambda: g2p.evaluate(M, [("cat", ("K",))], references=[("K",)]), TypeError, "references"),
    (lambda: g2p.evaluate(M, [("cat", ("K",))], references={"cat": "K"}), TypeError,
     r"references\['cat'\]"),
])
def test_bad_input_names_the_parameter(call, error, match) -> None:
    with pytest.raises(error, match=f"^{match}"):
        call()


def test_load_g2p_en_bad_files(tmp_path: Path) -> None:
    from lmlab.data import g2p_checkpoint

    with pytest.raises(FileNotFoundError, match="missing.npz"):
        g2p.load_g2p_en(tmp_path / "missing.npz")
    with pytest.raises(TypeError, match="^path"):
        g2p.load_g2p_en(3)  # type: ignore[arg-type]
    data = g2p_checkpoint().read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 3])
    with pytest.raises(ValueError, match="cut.npz"):
        g2p.load_g2p_en(tmp_path / "cut.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip file at all")
    with pytest.raises(ValueError, match="junk.npz"):
        g2p.load_g2p_en(tmp_path / "junk.npz")
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(ValueError, match="other.npz"):
        g2p.load_g2p_en(tmp_path / "other.npz")
    with np.load(g2p_checkpoint()) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["fc_w"] = arrays["fc_w"][:, :10]
    np.savez(tmp_path / "shapes.npz", **arrays)
    with pytest.raises(ValueError, match="shapes.npz"):
        g2p.load_g2p_en(tmp_path / "shapes.npz")


# --------------------------------------------------------------------------- g2p_en reference


def _g2p_reference() -> object:
    """g2p_en's own G2p class, built from its source without the NLTK imports and downloads.

    Only the NumPy parts are kept: the symbol tables of ``__init__``, ``load_variables``,
    ``sigmoid``, ``grucell``, ``gru``, ``encode`` and ``predict``, executed as written there.
    """
    spec = importlib.util.find_spec("g2p_en")
    assert spec is not None and spec.submodule_search_locations
    folder = Path(next(iter(spec.submodule_search_locations)))
    with warnings.catch_warnings():  # g2p.py has an invalid escape sequence in a regex
        warnings.simplefilter("ignore", (DeprecationWarning, SyntaxWarning))
        tree = ast.parse((folder / "g2p.py").read_text(encoding="utf-8"))
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "G2p")
    keep = {"load_variables", "sigmoid", "grucell", "gru", "encode", "predict"}
    body = []
    for node in cls.body:
        if isinstance(node, ast.FunctionDef) and node.name == "__init__":
            node.body = [s for s in node.body if "cmudict" not in ast.unparse(s)
                         and "homograph" not in ast.unparse(s)]
            body.append(node)
        elif isinstance(node, ast.FunctionDef) and node.name in keep:
            body.append(node)
    cls.body = body
    module = ast.Module(body=[cls], type_ignores=[])
    namespace = {"np": np, "os": os, "dirname": str(folder)}
    exec(compile(ast.fix_missing_locations(module), str(folder / "g2p.py"), "exec"), namespace)
    return namespace["G2p"]()


def test_g2p_en_symbols_are_ours() -> None:
    reference = _g2p_reference()
    assert tuple(reference.graphemes) == g2p.GRAPHEMES  # type: ignore[attr-defined]
    assert tuple(reference.phonemes) == g2p.PHONEMES  # type: ignore[attr-defined]


def test_g2p_en_checkpoint_reproduces_its_own_predictions(g2p_en: Seq2Seq) -> None:
    reference = _g2p_reference()
    words = WORDS + [w for w, _ in g2p.cmudict_splits()["test"][::400]]
    expected = [tuple(reference.predict(w)) for w in words]  # type: ignore[attr-defined]
    assert g2p.transcribe(g2p_en, words, max_len=20) == expected
    assert "g2p_en.g2p" not in sys.modules


def test_g2p_en_logits_match_numpy(g2p_en: Seq2Seq) -> None:
    reference = _g2p_reference()
    word = "pronunciation"
    enc = reference.encode(word)  # type: ignore[attr-defined]
    states = reference.gru(enc, len(word) + 1, reference.enc_w_ih, reference.enc_w_hh,  # type: ignore[attr-defined]
                           reference.enc_b_ih, reference.enc_b_hh)  # type: ignore[attr-defined]
    src, lengths = g2p.encode_words([word])
    memory, state, _ = g2p_en.encode(src, lengths)
    np.testing.assert_allclose(memory[0].detach().numpy(), states[0], rtol=1e-4, atol=1e-5)
