#!/usr/bin/env python3
"""Load generator for OpenAI-compatible servers (torchless serve, llama-server): C concurrent
clients each send R streaming chat requests (greedy, fixed max_tokens, distinct prompts) to
BASE (http://host:port); reports aggregate generated tokens/s and time to first token p50/p99.
Loopback only, bounded by requests and a deadline. Prints one JSON line per concurrency.

  serve_load.py http://127.0.0.1:8080 --clients 1 4 16 --requests 2 --max-tokens 64
"""
import argparse
import http.client
import json
import statistics
import threading
import time
import urllib.parse


def one(base, prompt, max_tokens, deadline):
    u = urllib.parse.urlparse(base)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=max(1, deadline - time.time()))
    body = json.dumps({"model": "any", "stream": True, "temperature": 0, "max_tokens": max_tokens,
                       "messages": [{"role": "user", "content": prompt}]})
    t0 = time.time()
    c.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
    r = c.getresponse()
    if r.status != 200:
        raise RuntimeError(f"HTTP {r.status}: {r.read()[:200]!r}")
    first, tokens = None, 0
    for raw in r:
        line = raw.decode().strip()
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        ch = json.loads(line[6:])
        delta = (ch.get("choices") or [{}])[0].get("delta", {})
        if delta.get("content") or delta.get("reasoning_content"):
            tokens += 1
            if first is None:
                first = time.time() - t0
    c.close()
    return first or 0.0, tokens


def run(base, clients, requests, max_tokens, limit_s):
    deadline = time.time() + limit_s
    results, errors = [], []
    lock = threading.Lock()

    def client(i):
        for k in range(requests):
            if time.time() > deadline:
                return
            try:
                r = one(base, f"Write a short story about robot number {i * 100 + k}.", max_tokens, deadline)
                with lock:
                    results.append(r)
            except Exception as e:  # noqa: BLE001 - reported, not hidden
                with lock:
                    errors.append(str(e))

    t0 = time.time()
    ts = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    wall = time.time() - t0
    ttft = sorted(r[0] for r in results)
    q = lambda p: ttft[min(len(ttft) - 1, int(p * len(ttft)))] if ttft else None  # noqa: E731
    return {"clients": clients, "requests": len(results), "errors": errors[:3],
            "tokens": sum(r[1] for r in results), "wall_s": round(wall, 2),
            "agg_tok_s": round(sum(r[1] for r in results) / wall, 2) if wall else 0,
            "ttft_p50_s": q(0.5) and round(q(0.5), 3), "ttft_p99_s": q(0.99) and round(q(0.99), 3),
            "ttft_mean_s": round(statistics.mean(ttft), 3) if ttft else None}


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("base")
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--requests", type=int, default=2, help="requests per client")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--limit", type=float, default=300, help="seconds per concurrency level")
    a = ap.parse_args()
    for c in a.clients:
        print(json.dumps(run(a.base, c, a.requests, a.max_tokens, a.limit)), flush=True)
