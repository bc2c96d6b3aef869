"""lmlab.gguf_tokenizer against SmolLM2's own tokenizer (tokenizers) and transformers' GGUF reader."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lmlab import data
from lmlab.gguf_file import GGUFFile
from lmlab.gguf_tokenizer import GGUFTokenizer

EDGE_CASES = Path(__file__).parent / "data" / "tokenization" / "edge_cases.txt"


@pytest.fixture(scope="module")
def tok(smol_gguf: GGUFFile) -> GGUFTokenizer:
    return GGUFTokenizer.from_gguf(smol_gguf)


@pytest.fixture(scope="module")
def smollm2_tokenizers(gguf_hf_tok):
    """SmolLM2's tokenizer as its own ``tokenizer.json`` defines it: transformers' GGUF vocabulary
    and merges, with the pre-tokenizer the file names (``smollm``: every digit alone, then
    GPT-2's byte-level regex). transformers 5.24 does not know the name ``smollm`` and falls back
    to the plain byte-level regex, which differs where whitespace precedes a digit."""
    from tokenizers import pre_tokenizers

    backend = copy.deepcopy(gguf_hf_tok.backend_tokenizer)
    backend.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    return backend


def corpus_lines() -> list[str]:
    lines: list[str] = []
    for name in ("wikipedia", "shakespeare", "sotu"):
        lines.extend(data.load_text(name).split("\n")[5::11][:1500])
    lines.extend(EDGE_CASES.read_text(encoding="utf-8").split("\n"))
    lines += ["  1", "a  12\n\n3 x", "x\t 7", "\n\n42", "3.14159 and 2,718", "１２３ ٣ ⅷ",
              "<|im_start|>user\nHi<|im_end|>\n", "<|endoftext|><|endoftext|>", "", " ",
              "l'école d'été", "CAPS'LL 'S", "🙂🙂 e\u0301"]
    return lines


# ------------------------------------------------------------------ the tokenizer


def test_tokenizer_matches_smollm2_reference_on_a_corpus(tok, smollm2_tokenizers):
    lines = corpus_lines()
    ours = tok.encode_batch(lines)
    ref = [e.ids for e in smollm2_tokenizers.encode_batch(lines, add_special_tokens=False)]
    assert ours == ref
    assert [tok.decode(ids) for ids in ours] == lines


def test_tokenizer_matches_transformers_where_no_space_precedes_a_digit(tok, gguf_hf_tok):
    """transformers' GGUF tokenizer uses GPT-2's regex without the digit split; the two agree
    wherever no whitespace comes right before a digit (no merge in the vocabulary holds a
    digit), and differ there, which is why the reference above restores the file's split."""
    import regex

    lines = [ln for ln in corpus_lines() if not regex.search(r"\s\p{N}", ln)]
    assert len(lines) > 2000
    ref = [gguf_hf_tok(ln, add_special_tokens=False).input_ids for ln in lines]
    assert tok.encode_batch(lines) == ref
    assert tok.encode("a  12") != gguf_hf_tok("a  12", add_special_tokens=False).input_ids


_NO_BYTE = "\x04\x06\x13\x14\x16\x1d"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(st.characters(max_codepoint=0x3FFFF, blacklist_categories=("Cs",),
                            blacklist_characters=_NO_BYTE), max_size=40))
def test_tokenizer_matches_reference_on_any_text(tok, smollm2_tokenizers, text):
    """Any text without the bytes SmolLM2 has no token for (six control characters, and the
    lead bytes 0xF1/0xF2 of code points from U+40000)."""
    ids = tok.encode(text)
    assert ids == smollm2_tokenizers.encode(text, add_special_tokens=False).ids
    assert tok.decode(ids) == text


def test_tokenizer_specials_and_vocabulary(tok):
    assert tok.vocab_size == 49152
    assert tok.special_tokens["<|im_start|>"] == 1 and tok.special_tokens["<|im_end|>"] == 2
    assert len(tok.special_tokens) == 17
    assert tok.encode("<|im_end|>") == [2]
    assert len(tok.encode("<|im_end|>", allowed_special="none")) > 1
    assert tok.token_to_id("Ġthe") is not None and tok.id_to_token(2) == "<|im_end|>"
    assert tok.id_to_token(10**6) is None and tok.token_to_id("no such token") is None
    assert tok.decode([19556, 905]) == "Hello world"


def test_tokenizer_bad_input(tok):
    with pytest.raises(TypeError, match="text"):
        tok.encode(b"bytes")
    with pytest.raises(TypeError, match="texts"):
        tok.encode_batch("one string")
    with pytest.raises(ValueError, match="allowed_special"):
        tok.encode("x", allowed_special="some")
    with pytest.raises(ValueError, match="byte 0x04"):
        tok.encode("a\x04b")
    with pytest.raises(ValueError, match="surrogate"):
        tok.encode("\ud800")
    for bad in ([49152], [-1], [1.0], [True], ["a"]):
        with pytest.raises(ValueError, match="ids"):
            tok.decode(bad)


def test_tokenizer_from_inconsistent_metadata():
    with pytest.raises(ValueError, match="token_types"):
        GGUFTokenizer(["a", "b"], [], [1], r"\w+")
    with pytest.raises(ValueError, match=r"merges\[0\]"):
        GGUFTokenizer(["a", "b"], ["a c"], [1, 1], r"\w+")
    with pytest.raises(ValueError, match="twice"):
        GGUFTokenizer(["a", "a"], [], [1, 1], r"\w+")


def test_tokenizer_arguments_checked_by_kind():
    good = (["a", "b", "ab"], ["a b"], [1, 1, 1], r"\w+")
    tok = GGUFTokenizer(*good, bos_token_id=0, eos_token_id=2)
    assert tok.encode("ab ba") == [2, 1, 0] and tok.eos_token_id == 2
    for name, bad in (("eos_token_id", 10**6), ("eos_token_id", 3), ("bos_token_id", -1)):
        with pytest.raises(ValueError, match=f"^{name}: expected an int"):
            GGUFTokenizer(*good, **{name: bad})
    for name, bad in (("eos_token_id", "2"), ("bos_token_id", 1.0), ("eos_token_id", True)):
        with pytest.raises(TypeError, match=f"^{name}:"):
            GGUFTokenizer(*good, **{name: bad})
    with pytest.raises(TypeError, match="^tokens"):
        GGUFTokenizer("ab", *good[1:])
    with pytest.raises(TypeError, match=r"^tokens\[1\]"):
        GGUFTokenizer(["a", 2, "ab"], *good[1:])
    with pytest.raises(ValueError, match="^tokens"):
        GGUFTokenizer([], [], [], r"\w+")
    with pytest.raises(TypeError, match=r"^merges\[0\]"):
        GGUFTokenizer(good[0], [("a", "b")], *good[2:])
    with pytest.raises(TypeError, match=r"^token_types\[2\]"):
        GGUFTokenizer(*good[:2], [1, 1, "1"], good[3])
    with pytest.raises(TypeError, match="^token_types"):
        GGUFTokenizer(*good[:2], 3, good[3])
    with pytest.raises(TypeError, match="^pattern"):
        GGUFTokenizer(*good[:3], None)
    with pytest.raises(ValueError, match="^pattern: not a valid regular expression"):
        GGUFTokenizer(*good[:3], r"(\w+")
    with pytest.raises(TypeError, match="^file"):
        GGUFTokenizer.from_gguf("SmolLM2.gguf")
    with pytest.raises(TypeError, match="^token"):
        tok.token_to_id(2)
    with pytest.raises(TypeError, match="^id"):
        tok.id_to_token("2")
    assert tok.id_to_token(-1) is None and tok.id_to_token(3) is None
    with pytest.raises(TypeError, match="^ids"):
        tok.decode(5)
    with pytest.raises(TypeError, match="^ids"):
        tok.decode("ab")
    with pytest.raises(TypeError, match=r"^texts\[1\]"):
        tok.encode_batch(["ab", None])
    with pytest.raises(TypeError, match="^texts"):
        tok.encode_batch(7)
    with pytest.raises(TypeError, match="^allowed_special"):
        tok.encode("ab", allowed_special=None)


def _tokenizer_file(path: Path, eos: int, merges: list[str]) -> Path:
    import gguf

    w = gguf.GGUFWriter(path, "llama")
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt2")
    w.add_token_list(["a", "b", "ab"])
    w.add_token_types([1, 1, 1])
    w.add_token_merges(merges)
    w.add_eos_token_id(eos)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_tokenizer_of_an_inconsistent_file_names_the_file(tmp_path):
    ok = GGUFTokenizer.from_gguf(GGUFFile(_tokenizer_file(tmp_path / "ok.gguf", 2, ["a b"])))
    assert ok.encode("ab") == [2] and ok.eos_token_id == 2
    for name, eos, merges, what in (("eos.gguf", 10**6, ["a b"], "eos_token_id"),
                                    ("merge.gguf", 2, ["a c"], "merges")):
        with pytest.raises(ValueError, match=f"^path: '{name}' has an inconsistent tokenizer: "
                                             f"{what}"):
            GGUFTokenizer.from_gguf(GGUFFile(_tokenizer_file(tmp_path / name, eos, merges)))


class _CountingRanks(dict):
    """A rank table that counts its look-ups: the merge loop's work, without a clock."""

    lookups = 0

    def get(self, key, default=None):
        self.lookups += 1
        return super().get(key, default)


def test_long_runs_without_spaces_cost_near_linear_work(tok):
    """One chunk of n random letters: 4x the letters cost at most 6x the rank look-ups
    (quadratic work would be 16x; the loop this replaced rescanned every pair after each merge,
    and 16,000 letters took 3.5 s). Timings are in benchmarks/bench_gguf_tokenizer.py."""
    import random
    import string

    rng = random.Random(0)
    counts = []
    for n in (2000, 8000):
        text = "".join(rng.choices(string.ascii_letters, k=n))
        ranks = _CountingRanks(tok._ranks)
        counting = copy.copy(tok)
        counting._ranks, counting._cache = ranks, {}
        assert counting.encode(text) == tok.encode(text)
        counts.append(ranks.lookups)
    assert counts[1] < 6 * counts[0], counts


@pytest.mark.parametrize("kind", ["letters", "one letter", "accents", "cjk", "punctuation",
                                  "spaces", "mixed"])
def test_long_runs_match_the_reference(tok, smollm2_tokenizers, kind):
    """Chunks of thousands of bytes (one pre-tokenizer chunk each) give tokenizers' ids."""
    import random
    import string

    rng = random.Random(kind)
    alphabets = {"letters": string.ascii_letters, "one letter": "a", "accents": "éèàùçœÉ",
                 "cjk": "的一是不了人我在有他这", "punctuation": "!?.,;:-_()[]{}<>/\\|@#$%^&*",
                 "spaces": " \t\n", "mixed": string.printable + "éü的"}
    text = "".join(rng.choices(alphabets[kind], k=6000))
    assert tok.encode(text) == smollm2_tokenizers.encode(text, add_special_tokens=False).ids
