#!/usr/bin/env python3
"""Writes the IQ formats' lattice grids (crates/quant/src/iq_grids/*.bin) from ggml's
ggml-common.h: the grids define the formats, like a spec's tables, so they are kept as data
(little-endian arrays) generated from ggml itself rather than typed in.

    python3 extract-grids.py [~/.cache/torchless-ref/llama.cpp/ggml/src/ggml-common.h]
"""
import os
import re
import struct
import sys

HEADER = sys.argv[1] if len(sys.argv) > 1 else os.path.expanduser(
    "~/.cache/torchless-ref/llama.cpp/ggml/src/ggml-common.h")
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../crates/quant/src/iq_grids")
TABLES = {  # name in ggml -> (struct format, entries)
    "iq2xxs_grid": ("<Q", 256),
    "iq2xs_grid": ("<Q", 512),
    "iq2s_grid": ("<Q", 1024),
    "iq3xxs_grid": ("<I", 256),
    "iq3s_grid": ("<I", 512),
    "iq1s_grid": ("<Q", 2048),
}

src = open(HEADER).read()
os.makedirs(OUT, exist_ok=True)
for name, (fmt, n) in TABLES.items():
    m = re.search(r"GGML_TABLE_BEGIN\(\w+, %s, \w+\)(.*?)GGML_TABLE_END\(\)" % name, src, re.S)
    assert m, name
    vals = [int(v, 0) for v in re.findall(r"0x[0-9a-fA-F]+|\d+", m.group(1))]
    assert len(vals) == n, (name, len(vals))
    with open(os.path.join(OUT, name.replace("_grid", "") + ".bin"), "wb") as f:
        f.write(b"".join(struct.pack(fmt, v) for v in vals))
    print(f"{name}: {n} entries")
