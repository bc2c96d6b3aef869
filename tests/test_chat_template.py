"""lmlab.chat_template against transformers' rendering of SmolLM2's template."""

from __future__ import annotations

import pytest

from lmlab.chat_template import ChatTemplate


CONVERSATIONS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "system", "content": "You answer in one word."},
     {"role": "user", "content": "Colour of the sky?"}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help?"},
     {"role": "user", "content": "Tell me a joke\nwith two lines."}],
]


@pytest.mark.parametrize("messages", CONVERSATIONS)
@pytest.mark.parametrize("add_generation_prompt", [False, True])
def test_chat_template_renders_as_transformers(smol_gguf, gguf_hf_tok, messages, add_generation_prompt):
    ours = ChatTemplate.from_gguf(smol_gguf).render(messages, add_generation_prompt)
    ref = gguf_hf_tok.apply_chat_template(messages, tokenize=False,
                                     add_generation_prompt=add_generation_prompt)
    assert ours == ref
    assert ours.startswith("<|im_start|>system\n")


def test_chat_template_bad_input(smol_gguf):
    t = ChatTemplate.from_gguf(smol_gguf)
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
    with pytest.raises(TypeError, match="^file"):
        ChatTemplate.from_gguf(None)
    with pytest.raises(TypeError, match="^eos_token"):
        ChatTemplate("{{ x }}", eos_token=2)
