#!/usr/bin/env python3
"""Greedy golden file for a re-quantized model, in the format of the shared golden set.

usage: make-greedy-golden.py GREEDY_BIN MODEL.gguf PROMPTS_FROM.json OUT.json [repack=off]

Takes the prompts (names and token ids) of an existing golden file (e.g. SmolLM2 Q4_1's),
runs `greedy` (scripts/quant-goldens/greedy.c) on MODEL and writes the steps with their top-5
log-probabilities.
"""
import json, os, subprocess, sys, tempfile

binary, model, prompts_from, out = sys.argv[1:5]
extra = sys.argv[5:]
src = json.load(open(prompts_from))
gens = src["generations"]
with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
    for g in gens:
        f.write(",".join(str(i) for i in g["prompt_ids"]) + "\n")
    prompts = f.name
lines = subprocess.run([binary, model, prompts, "48", *extra], check=True,
                       capture_output=True, text=True).stdout.splitlines()
os.unlink(prompts)
steps = [[] for _ in gens]
for line in lines:
    p, tid, *top = line.split()
    steps[int(p[1:])].append({
        "id": int(tid),
        "top": [{"id": int(t.split(":")[0]), "logprob": float(t.split(":")[1])} for t in top],
    })
json.dump({
    "model": os.path.basename(model),
    "engine": "llama.cpp b11434 (scripts/quant-goldens/greedy.c" + (", " + " ".join(extra) if extra else "") + ")",
    "generations": [{"name": g["name"], "prompt_ids": g["prompt_ids"], "steps": s}
                    for g, s in zip(gens, steps)],
}, open(out, "w"), indent=1)
