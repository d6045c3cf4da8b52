#!/usr/bin/env python3
"""Renders chat templates with Python jinja2 the way Hugging Face
`apply_chat_template` does, for tests/chat_templates.rs to compare against.

Inputs: the SmolLM2 GGUF (its tokenizer.chat_template) and llama.cpp's
models/templates/*.jinja fetched by scripts/fetch-tokenizer-tests.sh.
Output: tests/data/chat_golden.json (committed).

    pip install jinja2==3.1.6
    python3 crates/tokenizer/tests/gen/gen_chat_golden.py
"""
import json
import os
import struct
import sys
from datetime import datetime, timezone
from pathlib import Path

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

HERE = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("TORCHLESS_CACHE", Path.home() / ".cache/torchless"))
OUT = HERE.parent / "data" / "chat_golden.json"

# Fixed clock so strftime_now() output is reproducible (the Rust side uses the same).
NOW_UNIX = 1_709_210_096  # 2024-02-29 12:34:56 UTC

CONVERSATION = [
    {"role": "system", "content": "You are a concise assistant."},
    {"role": "user", "content": "What is 2+2?"},
    {"role": "assistant", "content": "4."},
    {"role": "user", "content": "And <b>3+3</b> & \"quotes\"?"},
]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city, in °C.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string", "description": "City name"}},
                "required": ["city"],
            },
        },
    }
]
SCENARIOS = {
    "basic": {"messages": CONVERSATION, "add_generation_prompt": True},
    "no_gen_prompt": {"messages": CONVERSATION[1:3], "add_generation_prompt": False},
    "tools": {"messages": CONVERSATION[1:2], "add_generation_prompt": True, "tools": TOOLS},
}
BOS, EOS = "<s>", "</s>"


def gguf_string(path: Path, wanted: str) -> str:
    """Reads one string value from a GGUF header (a minimal reader, no dependencies)."""
    with open(path, "rb") as f:
        magic, _version, _n_tensors, n_kv = struct.unpack("<4sIQQ", f.read(24))
        assert magic == b"GGUF", path
        sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}

        def read_str():
            (n,) = struct.unpack("<Q", f.read(8))
            return f.read(n).decode("utf-8")

        def skip(t):
            if t == 8:
                read_str()
            elif t == 9:
                et, n = struct.unpack("<IQ", f.read(12))
                if et in sizes:
                    f.seek(sizes[et] * n, 1)
                else:
                    for _ in range(n):
                        skip(et)
            else:
                f.seek(sizes[t], 1)

        for _ in range(n_kv):
            key = read_str()
            (t,) = struct.unpack("<I", f.read(4))
            if key == wanted and t == 8:
                return read_str()
            skip(t)
    raise KeyError(wanted)


def make_env() -> jinja2.Environment:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(fmt):
        return datetime.fromtimestamp(NOW_UNIX, tz=timezone.utc).strftime(fmt)

    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def render(env, source: str) -> dict:
    results = {}
    for name, sc in SCENARIOS.items():
        try:
            tmpl = env.from_string(source)
            results[name] = {"ok": tmpl.render(bos_token=BOS, eos_token=EOS, **sc)}
        except Exception as e:  # noqa: BLE001 - any failure is recorded as expected
            results[name] = {"error": f"{type(e).__name__}: {e}"}
    return results


def main() -> None:
    env = make_env()
    golden = {"now_unix": NOW_UNIX, "bos": BOS, "eos": EOS, "scenarios": SCENARIOS, "templates": {}}
    smol = CACHE / "models" / "smollm2-135m-instruct-q4_1.gguf"
    golden["templates"]["smollm2-gguf"] = render(env, gguf_string(smol, "tokenizer.chat_template"))
    tdir = CACHE / "llama-cpp-vocab" / "templates"
    for path in sorted(tdir.glob("*.jinja")):
        golden["templates"][path.stem] = render(env, path.read_text(encoding="utf-8"))
    OUT.write_text(json.dumps(golden, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    ok = sum(1 for t in golden["templates"].values() for r in t.values() if "ok" in r)
    total = sum(len(t) for t in golden["templates"].values())
    print(f"wrote {OUT}: {len(golden['templates'])} templates, {ok}/{total} renders succeeded", file=sys.stderr)


if __name__ == "__main__":
    main()
