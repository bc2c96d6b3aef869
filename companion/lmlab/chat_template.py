"""Chat templates: a conversation written in the format a chat model was fine-tuned on.

:class:`ChatTemplate` renders a model's Jinja template the way ``transformers`` renders it; the
template comes from a GGUF file (:meth:`ChatTemplate.from_gguf`) or a Hugging Face folder's
``tokenizer_config.json`` (:mod:`lmlab.llama`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from lmlab._checks import check_bool, check_instance, check_str
from lmlab.data import import_package
from lmlab.gguf_file import GGUFFile

__all__ = ["ChatTemplate"]


class ChatTemplate:
    """A model's chat template (Jinja), rendered the way ``transformers`` renders it.

    A chat model was fine-tuned on conversations written in one fixed format; the template
    writes a list of messages in that format. ``transformers`` renders templates in a sandboxed
    Jinja environment with ``trim_blocks`` and ``lstrip_blocks``, the ``loopcontrols``
    extension, a ``tojson`` filter that does not escape HTML, and the globals
    ``raise_exception`` and ``strftime_now``; this class does the same.

    Args:
        source: the template's Jinja source.
        bos_token, eos_token: passed to the template as variables of those names.

    Example:
        >>> t = ChatTemplate("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\\n"
        ...                  "{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}")
        >>> t.render([{"role": "user", "content": "Hi"}], add_generation_prompt=True)
        '<user>Hi\\n<assistant>'
    """

    def __init__(self, source: str, bos_token: str | None = None,
                 eos_token: str | None = None) -> None:
        jinja2 = import_package("jinja2", "jinja2>=3.1", "pretrained")
        import jinja2.ext
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        check_str("source", source, allow_empty=False)
        for name, value in (("bos_token", bos_token), ("eos_token", eos_token)):
            if value is not None:
                check_str(name, value)
        self.source = source
        self.bos_token = bos_token
        self.eos_token = eos_token

        def raise_exception(message: str) -> None:
            raise jinja2.exceptions.TemplateError(message)

        def tojson(x: Any, ensure_ascii: bool = False, indent: int | None = None,
                   separators: Any = None, sort_keys: bool = False) -> str:
            return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent,
                              separators=separators, sort_keys=sort_keys)

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                            extensions=[jinja2.ext.loopcontrols])
        env.filters["tojson"] = tojson
        env.globals["raise_exception"] = raise_exception
        env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
        try:
            self._template = env.from_string(source)
        except jinja2.exceptions.TemplateSyntaxError as err:
            raise ValueError(f"source: not a valid Jinja template ({err})") from err

    @classmethod
    def from_gguf(cls, file: GGUFFile) -> ChatTemplate:
        """The template in ``file``'s ``tokenizer.chat_template``, with its BOS/EOS tokens.

        Raises:
            TypeError: ``file`` is not a :class:`GGUFFile`.
            ValueError: the file has no chat template or tokens, or its template is not valid
                Jinja; the message names the file.
        """
        check_instance("file", file, GGUFFile)
        tokens = file.require("tokenizer.ggml.tokens")

        def token(key: str) -> str | None:
            i = file.get(key)
            return tokens[i] if isinstance(i, int) and 0 <= i < len(tokens) else None

        source = file.require("tokenizer.chat_template")
        try:
            return cls(source, token("tokenizer.ggml.bos_token_id"),
                       token("tokenizer.ggml.eos_token_id"))
        except (TypeError, ValueError) as err:
            raise ValueError(f"path: {file.path.name!r} has an unusable chat template: {err}"
                             ) from err

    def render(self, messages: Sequence[Mapping[str, str]],
               add_generation_prompt: bool = False) -> str:
        """Write ``messages`` as one string in the model's format.

        Args:
            messages: dicts with a ``"role"`` (``"system"``, ``"user"``, ``"assistant"``) and
                a ``"content"`` string, oldest first.
            add_generation_prompt: end with the header of an assistant turn, so that the model's
                continuation is its answer.

        Raises:
            TypeError: ``messages`` is not a list of dicts with string roles and contents.
            ValueError: ``messages`` is empty.
        """
        if isinstance(messages, (str, bytes, Mapping)) or not isinstance(messages, Sequence):
            raise TypeError(f"messages: expected a list of dicts, got {type(messages).__name__}")
        if not messages:
            raise ValueError("messages: expected at least one message")
        for i, m in enumerate(messages):
            if not isinstance(m, Mapping):
                raise TypeError(f"messages[{i}]: expected a dict, got {type(m).__name__}")
            for key in ("role", "content"):
                if not isinstance(m.get(key), str):
                    raise TypeError(f"messages[{i}]: expected a str under {key!r}, got "
                                    f"{type(m.get(key)).__name__}")
        check_bool("add_generation_prompt", add_generation_prompt)
        return self._template.render(messages=[dict(m) for m in messages],
                                     add_generation_prompt=add_generation_prompt,
                                     bos_token=self.bos_token, eos_token=self.eos_token,
                                     tools=None, documents=None)
