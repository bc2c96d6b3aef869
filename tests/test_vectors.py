"""Tests for lmlab.vectors: against gensim's KeyedVectors and scipy on the same vectors."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lmlab import data
from lmlab.vectors import WordVectors, pearson, spearman

gensim = pytest.importorskip("gensim")
from gensim.models import KeyedVectors  # noqa: E402

CHECKPOINTS = Path(__file__).resolve().parents[1] / "book" / "checkpoints"


def _keyed(wv: WordVectors) -> KeyedVectors:
    kv = KeyedVectors(vector_size=wv.d_model)
    kv.add_vectors(list(wv.words), wv.vectors.numpy())
    return kv


def _toy_vectors() -> WordVectors:
    g = torch.Generator().manual_seed(0)
    base = {w: torch.randn(16, generator=g) for w in ["man", "woman", "royal", "apple", "car", "tree"]}
    vecs = {**base, "king": base["man"] + base["royal"], "queen": base["woman"] + base["royal"]}
    words = list(vecs)
    return WordVectors(words, torch.stack([vecs[w] for w in words]), counts=list(range(8, 0, -1)))


# --------------------------------------------------------------------------- look-up


def test_most_similar_and_analogy_match_gensim() -> None:
    wv = _toy_vectors()
    kv = _keyed(wv)
    ours = wv.most_similar("king", k=5)
    theirs = kv.most_similar("king", topn=5)
    assert [w for w, _ in ours] == [w for w, _ in theirs]
    np.testing.assert_allclose([s for _, s in ours], [s for _, s in theirs], atol=1e-6)
    assert wv.analogy("man", "king", "woman")[0][0] == "queen"
    theirs = kv.most_similar(positive=["king", "woman"], negative=["man"], topn=3)
    assert [w for w, _ in wv.analogy("man", "king", "woman", k=3)] == [w for w, _ in theirs]
    assert wv.similarity("king", "queen") == pytest.approx(float(kv.similarity("king", "queen")), abs=1e-6)
    by_vector = wv.most_similar(wv["king"], k=1)
    assert by_vector[0][0] == "king" and by_vector[0][1] == pytest.approx(1.0, abs=1e-6)
    assert len(wv.most_similar("king", k=100)) == len(wv) - 1  # k larger than the vocabulary


def test_unknown_word_raises_key_error_with_the_word() -> None:
    wv = WordVectors(["king", "queen"], torch.eye(2))
    with pytest.raises(KeyError, match="'emperor'.*not in the vocabulary"):
        wv["emperor"]
    with pytest.raises(KeyError, match="try 'king'"):
        wv.similarity("King", "queen")


# --------------------------------------------------------------------------- evaluation vs gensim


@pytest.fixture(scope="module")
def analogy_vectors() -> WordVectors:
    """Vectors for every analogy word where two sections' relation is a fixed offset."""
    questions = data.load_analogies()
    words = sorted({w for q in questions for w in q[1:]})
    random.Random(0).shuffle(words)
    g = torch.Generator().manual_seed(0)
    vecs = {w: torch.randn(24, generator=g) for w in words}
    offset = torch.randn(24, generator=g) * 2
    for section, a, b, c, d in questions:
        if section in ("capital-common-countries", "family"):
            vecs[b] = vecs[a] + offset + 0.3 * torch.randn(24, generator=g)
    return WordVectors(words, torch.stack([vecs[w] for w in words]))


def _gensim_analogies(wv: WordVectors, questions: list[tuple[str, ...]], restrict_vocab: int,
                      tmp_path: Path) -> tuple[float, list[dict]]:
    lines, section = [], None
    for s, *quad in questions:
        if s != section:
            lines.append(f": {s}")
            section = s
        lines.append(" ".join(quad))
    path = tmp_path / "questions.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return _keyed(wv).evaluate_word_analogies(str(path), restrict_vocab=restrict_vocab)


def _assert_same_grades(ours, score: float, sections: list[dict]) -> None:
    total = sections[-1]
    assert ours.correct == len(total["correct"])
    assert ours.evaluated == len(total["correct"]) + len(total["incorrect"])
    assert ours.accuracy == pytest.approx(score, abs=1e-12)
    for s in sections[:-1]:
        assert ours.sections[s["section"]] == (len(s["correct"]), len(s["correct"]) + len(s["incorrect"]))


@pytest.mark.parametrize("restrict_vocab", [150, 300000])
def test_analogy_accuracy_matches_gensim(analogy_vectors: WordVectors, restrict_vocab: int) -> None:
    ours = analogy_vectors.evaluate_analogies(restrict_vocab=restrict_vocab)
    score, sections = _keyed(analogy_vectors).evaluate_word_analogies(
        str(data.evaluation_file("analogies")), restrict_vocab=restrict_vocab)
    _assert_same_grades(ours, score, sections)
    if restrict_vocab > 1000:
        assert ours.accuracy > 0.02  # the planted relation is found


def test_athens_greece_baghdad_with_a_rarer_capitalised_baghdad(tmp_path: Path) -> None:
    """The issue's example: "Baghdad" sits next to "baghdad" and must not be the answer."""
    g = torch.Generator().manual_seed(0)
    base = {w: torch.randn(8, generator=g) for w in ["athens", "greece", "baghdad", "oslo", "norway"]}
    offset = torch.randn(8, generator=g)
    base["iraq"] = base["baghdad"] + offset + 0.5 * torch.randn(8, generator=g)
    base["greece"] = base["athens"] + offset
    base["norway"] = base["oslo"] + offset
    base["Baghdad"] = base["baghdad"] + 0.01 * torch.randn(8, generator=g)  # rarer spelling
    words = list(base)
    wv = WordVectors(words, torch.stack([base[w] for w in words]))
    questions = [("capital-common-countries", "athens", "greece", "baghdad", "iraq"),
                 ("capital-common-countries", "athens", "greece", "oslo", "norway")]
    assert wv.analogy("athens", "greece", "baghdad")[0][0] == "Baghdad"  # the raw nearest row
    ours = wv.evaluate_analogies(questions)
    assert ours.correct == 2  # gensim skips the spelling of an input and finds "iraq"
    _assert_same_grades(ours, *_gensim_analogies(wv, questions, 300000, tmp_path))


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 10**6), st.sampled_from([40, 300, 300000]))
def test_case_variants_are_graded_as_gensim_does(seed: int, restrict_vocab: int) -> None:
    """Rarer and more frequent spellings of analogy words, planted next to the originals."""
    import tempfile

    rng = random.Random(seed)
    questions = [q for q in data.load_analogies()
                 if q[0] in ("capital-common-countries", "family", "gram3-comparative")]
    questions = sorted(rng.sample(questions, 80), key=lambda q: q[0])  # sections in one block
    words = sorted({w for q in questions for w in q[1:]})
    rng.shuffle(words)
    g = torch.Generator().manual_seed(seed)
    vecs = {w: torch.randn(12, generator=g) for w in words}
    offset = torch.randn(12, generator=g)
    for _, a, b, c, d in questions:
        if rng.random() < 0.5:
            vecs[b] = vecs[a] + offset + 0.2 * torch.randn(12, generator=g)
    order = list(words)
    for w in words:
        r = rng.random()
        variant = w.capitalize() if r < 0.5 else w.upper()
        if variant == w or r > 0.7:
            continue
        vecs[variant] = vecs[w] + 0.05 * torch.randn(12, generator=g)
        position = order.index(w) + (rng.randint(1, 30) if rng.random() < 0.7 else 0)
        order.insert(min(position, len(order)), variant)  # usually rarer, sometimes more frequent
    wv = WordVectors(order, torch.stack([vecs[w] for w in order]))
    ours = wv.evaluate_analogies(questions, restrict_vocab=restrict_vocab)
    with tempfile.TemporaryDirectory() as tmp:
        _assert_same_grades(ours, *_gensim_analogies(wv, questions, restrict_vocab, Path(tmp)))


@pytest.mark.parametrize("name", ["wordsim353", "simlex999"])
def test_word_similarity_matches_gensim(name: str) -> None:
    pairs = data.load_word_similarity(name)
    words = sorted({w for p in pairs for w in p[:2]})
    words = words[: int(len(words) * 0.8)]  # leave some pairs out of vocabulary
    words[::7] = [w.capitalize() for w in words[::7]]  # some only in another spelling
    g = torch.Generator().manual_seed(1)
    wv = WordVectors(words, torch.randn(len(words), 20, generator=g))
    ours = wv.evaluate_word_similarity(name)
    pearson_r, (rho, _p), oov = _keyed(wv).evaluate_word_pairs(str(data.evaluation_file(name)))
    assert ours.spearman == pytest.approx(rho, abs=1e-6)
    assert ours.pearson == pytest.approx(pearson_r[0], abs=1e-6)
    assert ours.oov_ratio == pytest.approx(oov, abs=1e-9) and ours.oov_ratio > 0
    assert ours.evaluated == round(len(pairs) * (1 - oov / 100))


def test_too_few_known_pairs_give_nan() -> None:
    result = _toy_vectors().evaluate_word_similarity([("king", "queen", 8.0), ("x", "y", 1.0)])
    assert result.evaluated == 1 and math.isnan(result.spearman) and math.isnan(result.pearson)
    assert result.oov_ratio == 50.0


# --------------------------------------------------------------------------- correlations


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.floats(-3, 3, allow_nan=False)), min_size=3,
                max_size=30))
def test_pearson_and_spearman_match_scipy(values: list[tuple[int, float]]) -> None:
    from scipy.stats import pearsonr, spearmanr
    x = torch.tensor([float(a) for a, _ in values], dtype=torch.float64)
    y = torch.tensor([b for _, b in values], dtype=torch.float64)
    if x.unique().numel() < 2 or y.unique().numel() < 2:
        assert math.isnan(pearson(x, y)) and math.isnan(spearman(x, y))
        return
    assert spearman(x, y) == pytest.approx(spearmanr(x.numpy(), y.numpy()).statistic, abs=1e-9)
    assert pearson(x, y) == pytest.approx(pearsonr(x.numpy(), y.numpy()).statistic, abs=1e-9)


@pytest.mark.parametrize("scale", [1e-200, 1e-100, 1.0, 1e100, 1e200])
def test_pearson_is_scale_free_like_scipy(scale: float) -> None:
    from scipy.stats import pearsonr
    x = torch.tensor([0.0, 1.0, 2.0, 4.0], dtype=torch.float64)
    y = torch.tensor([0.0, 0.0, 3.0, 1.0], dtype=torch.float64) * scale
    expected = pearsonr(x.numpy(), y.numpy()).statistic
    assert pearson(x, y) == pytest.approx(expected, abs=1e-12)  # NaN for 1e-200 before
    assert math.isnan(pearson(x, torch.full((4,), 0.1, dtype=torch.float64)))


def test_correlations_accept_any_real_dtype() -> None:
    x, y = torch.tensor([1, 2, 3, 5]), torch.tensor([2.0, 1.0, 4.0, 3.0], dtype=torch.float16)
    assert pearson(x, y) == pytest.approx(pearson(x.double(), y.double()), abs=1e-12)


# --------------------------------------------------------------------------- sentences and pieces


def test_sentence_vector_is_mean_of_known_words() -> None:
    wv = _toy_vectors()
    expected = torch.stack([wv["king"], wv["apple"]]).mean(0)
    torch.testing.assert_close(wv.embed_sentence("The king ate an apple!"), expected)
    torch.testing.assert_close(wv.embed_sentence(["king", "apple", "zzz"]), expected)
    assert torch.equal(wv.embed_sentence("nothing known"), torch.zeros(16))
    assert torch.equal(wv.embed_sentence(""), torch.zeros(16))


def test_word_from_wordpiece_pieces() -> None:
    from tokenizers import BertWordPieceTokenizer
    tok = BertWordPieceTokenizer(str(data.bert_vocab_file()), lowercase=True)

    def split(text: str) -> list[str]:
        return tok.encode(text, add_special_tokens=False).tokens

    pieces = split("unbelievably")
    assert len(pieces) > 1
    g = torch.Generator().manual_seed(0)
    vocab = [*pieces, "other"]
    wv = WordVectors(vocab, torch.randn(len(vocab), 8, generator=g))
    torch.testing.assert_close(wv.embed_pieces("Unbelievably", split), wv.vectors[: len(pieces)].mean(0))
    with pytest.raises(KeyError, match="none of its pieces"):
        wv.embed_pieces("xylophone", split)


# --------------------------------------------------------------------------- files


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_save_load_round_trip(tmp_path: Path, dtype: torch.dtype) -> None:
    wv = _toy_vectors()
    path = tmp_path / "toy.safetensors"
    wv.save(path, metadata={"note": "made in a test"}, dtype=dtype)
    assert [p.name for p in tmp_path.iterdir()] == ["toy.safetensors"]  # no temporary left
    loaded = WordVectors.load(path)
    assert loaded.words == wv.words and torch.equal(loaded.counts, wv.counts)
    assert loaded.metadata == {"note": "made in a test"}
    assert torch.equal(loaded.vectors, wv.vectors.to(dtype).float())
    assert [w for w, _ in loaded.most_similar("king", 3)] == [w for w, _ in wv.most_similar("king", 3)]


def test_unicode_words_round_trip(tmp_path: Path) -> None:
    words = ["straße", "köln", "東京", "naïve", "emoji🙂"]
    wv = WordVectors(words, torch.randn(5, 4, generator=torch.Generator().manual_seed(0)))
    wv.save(tmp_path / "u.safetensors")
    assert WordVectors.load(tmp_path / "u.safetensors").words == tuple(words)


@pytest.fixture()
def saved(tmp_path: Path) -> Path:
    path = tmp_path / "v.safetensors"
    _toy_vectors().save(path)
    return path


def test_truncated_file_names_the_file(saved: Path) -> None:
    raw = saved.read_bytes()
    for cut in (len(raw) - 10, len(raw) // 2, 20, 3, 0):
        saved.write_bytes(raw[:cut])
        with pytest.raises(ValueError, match=str(saved.name)):
            WordVectors.load(saved)


def test_corrupted_tensor_bytes_are_caught_by_the_checksum(saved: Path) -> None:
    raw = bytearray(saved.read_bytes())
    raw[-5] ^= 0x40  # one bit of one vector, a valid float either way
    saved.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=f"{saved.name}.*checksum"):
        WordVectors.load(saved)


def test_other_safetensors_files_are_refused_by_name(tmp_path: Path) -> None:
    from lmlab.io import save_tensors
    path = tmp_path / "other.safetensors"
    save_tensors({"weight": torch.zeros(2, 2)}, path)
    with pytest.raises(ValueError, match="other.safetensors: not an lmlab model file"):
        WordVectors.load(path)
    with pytest.raises(FileNotFoundError, match="path"):
        WordVectors.load(tmp_path / "missing.safetensors")
    (tmp_path / "garbage.safetensors").write_bytes(b"\xff" * 64)
    with pytest.raises(ValueError, match="garbage.safetensors"):
        WordVectors.load(tmp_path / "garbage.safetensors")


@pytest.mark.parametrize("name", ["word2vec_sotu", "word2vec_pieces", "word2vec_gensim"])
def test_committed_checkpoints_load(name: str) -> None:
    wv = WordVectors.load(CHECKPOINTS / f"{name}.safetensors")
    assert len(wv) > 5000 and wv.d_model == 100
    assert wv.metadata["script"] == "scripts/train_word2vec.py"
    assert bool((wv.counts[:-1] >= wv.counts[1:]).all())  # most frequent first


# --------------------------------------------------------------------------- bad input


def test_constructor_rejects_bad_input() -> None:
    good = torch.zeros(2, 3)
    cases = [
        (("ab", good), TypeError, "words"),  # a bare string
        ((["a", 1], good), TypeError, r"words\[1\]"),
        (([], torch.zeros(0, 3)), ValueError, "words"),
        ((["a", "a"], good), ValueError, "unique"),
        ((["a", ""], good), ValueError, "words"),
        ((["a", "b\tc"], good), ValueError, "words"),
        ((["a", "b"], [[0.0] * 3] * 2), TypeError, "vectors"),
        ((["a", "b"], torch.zeros(2, 3, dtype=torch.long)), TypeError, "vectors"),
        ((["a", "b"], torch.zeros(3, 3)), ValueError, "vectors"),
        ((["a", "b"], torch.zeros(2)), ValueError, "vectors"),
        ((["a", "b"], torch.zeros(2, 0)), ValueError, "vectors"),
        ((["a", "b"], torch.tensor([[0.0, math.nan], [0.0, 1.0]])), ValueError, "vectors"),
        ((["a", "b"], torch.tensor([[0.0, math.inf], [0.0, 1.0]])), ValueError, "vectors"),
        ((["a", "b"], good, [1]), ValueError, "counts"),
        ((["a", "b"], good, [1, -1]), ValueError, "counts"),
        ((["a", "b"], good, [1, 2.5]), TypeError, "counts"),
        ((["a", "b"], good, torch.tensor([1.0, 2.0])), TypeError, "counts"),
        ((["a", "b"], good, "12"), TypeError, "counts"),
        ((["a", "b"], good, None, {1: "k"}), TypeError, "metadata"),
        ((["a", "b"], good, None, {"k": math.nan}), ValueError, "metadata"),
        ((["a", "b"], good, None, {"k": object()}), TypeError, "metadata"),
        ((["a", "b"], good, None, ["k"]), TypeError, "metadata"),
    ]
    for args, error, message in cases:
        with pytest.raises(error, match=message):
            WordVectors(*args)


def test_methods_reject_bad_input(tmp_path: Path) -> None:
    wv = _toy_vectors()
    cases = [
        (lambda: wv.most_similar("king", k=0), ValueError, "k"),
        (lambda: wv.most_similar("king", k=2.0), TypeError, "k"),
        (lambda: wv.most_similar(3), TypeError, "word"),
        (lambda: wv.most_similar(torch.zeros(5)), ValueError, "word"),
        (lambda: wv.most_similar(torch.zeros(2, 16)), ValueError, "word"),
        (lambda: wv.most_similar(torch.full((16,), math.nan)), ValueError, "word"),
        (lambda: wv.most_similar(torch.zeros(16, dtype=torch.long)), TypeError, "word"),
        (lambda: wv.similarity("king", None), TypeError, "^w2: expected a str"),
        (lambda: wv.similarity(1, "king"), TypeError, "^w1: expected a str"),
        (lambda: wv.similarity("king", "zebra"), KeyError, "w2: word 'zebra' is not in"),
        (lambda: wv.analogy("man", "zebra", "woman"), KeyError, "b: word 'zebra' is not in"),
        (lambda: wv.most_similar(torch.zeros(16, device="meta")), ValueError,
         "^word: expected a tensor with values, got a meta tensor"),
        (lambda: WordVectors(["a"], torch.zeros(1, 2, device="meta")), ValueError,
         "^vectors: expected a tensor with values"),
        (lambda: wv.analogy("man", "king", "woman", k=-1), ValueError, "k"),
        (lambda: wv.analogy("man", "king", 5), TypeError, "^c: expected a str"),
        (lambda: wv.evaluate_analogies(restrict_vocab=0), ValueError, "restrict_vocab"),
        (lambda: wv.evaluate_analogies(restrict_vocab=1.5), TypeError, "restrict_vocab"),
        (lambda: wv.evaluate_analogies("questions.txt"), TypeError, "questions"),
        (lambda: wv.evaluate_analogies([("s", "a", "b", "c")]), TypeError, r"questions\[0\]"),
        (lambda: wv.evaluate_analogies([("s", "a", "b", "c", 4)]), TypeError, r"questions\[0\]"),
        (lambda: wv.evaluate_word_similarity("men"), ValueError,
         r"^pairs: expected one of \('wordsim353', 'simlex999'\) or a list"),
        (lambda: wv.evaluate_word_similarity(3), TypeError, "pairs"),
        (lambda: wv.evaluate_word_similarity([("a", "b")]), TypeError, r"pairs\[0\]"),
        (lambda: wv.evaluate_word_similarity([("a", "b", "high")]), TypeError, r"pairs\[0\]"),
        (lambda: wv.evaluate_word_similarity([("a", "b", math.nan)]), ValueError, r"pairs\[0\]"),
        (lambda: wv.evaluate_word_similarity(restrict_vocab=-5), ValueError, "restrict_vocab"),
        (lambda: wv.embed_pieces("", str.split), ValueError, "word"),
        (lambda: wv.embed_pieces("king", "split"), TypeError, "split"),
        (lambda: wv.embed_pieces("king", lambda w: w), TypeError, "split"),
        (lambda: wv.embed_sentence(42), TypeError, "text"),
        (lambda: wv.embed_sentence(["king", 3]), TypeError, r"text\[1\]"),
        (lambda: wv.embed_sentence("king", split=None), TypeError, "split"),
        (lambda: wv.save(42), TypeError, "path"),
        (lambda: wv.save(tmp_path / "x.safetensors", dtype=torch.int8), ValueError, "dtype"),
        (lambda: wv.save(tmp_path / "x.safetensors", metadata={"loss": math.inf}), ValueError,
         "metadata"),
        (lambda: wv.save(tmp_path / "x.safetensors", metadata={1: "x"}), TypeError, "metadata"),
        (lambda: WordVectors.load(tmp_path / "x.safetensors", dtype=torch.float16), ValueError,
         "dtype"),
        (lambda: WordVectors.load(tmp_path / "x.safetensors", device="tpu"), ValueError,
         "device"),
        (lambda: wv.save(tmp_path / "missing" / "x.safetensors"), FileNotFoundError, "folder"),
        (lambda: WordVectors.load(None), TypeError, "path"),
        (lambda: WordVectors.load(tmp_path), FileNotFoundError, "path"),
    ]
    for call, error, message in cases:
        with pytest.raises(error, match=message):
            call()
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_save_refuses_vectors_that_overflow_float16(tmp_path: Path) -> None:
    wv = WordVectors(["a", "b"], torch.tensor([[1e6, 0.0], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="dtype"):
        wv.save(tmp_path / "big.safetensors", dtype=torch.float16)
    assert not (tmp_path / "big.safetensors").exists()


def test_correlations_reject_bad_input() -> None:
    x = torch.tensor([1.0, 2.0, 3.0])
    cases = [
        ((x.tolist(), x), TypeError, "x"),
        ((x, torch.tensor([1.0, 2.0])), ValueError, "x, y"),
        ((x[:1], x[:1]), ValueError, "x, y"),
        ((x[None], x[None]), ValueError, "x"),
        ((x, torch.tensor([1.0, math.nan, 2.0])), ValueError, "y"),
        ((x, torch.tensor([True, False, True])), TypeError, "x, y"),
    ]
    for f in (pearson, spearman):
        for args, error, message in cases:
            with pytest.raises(error, match=message):
                f(*args)
