"""The official `openai` client against `torchless serve` (argv[1] = base URL ending in /v1).
Exits non-zero on the first failed check."""
import sys

import openai

base = sys.argv[1]
c = openai.OpenAI(base_url=base, api_key="unused")
msgs = [{"role": "user", "content": "Name three colours."}]

r = c.chat.completions.create(model="any", messages=msgs, max_tokens=16, temperature=0)
text = r.choices[0].message.content
assert r.object == "chat.completion" and text, r
assert r.usage.completion_tokens <= 16 and r.usage.prompt_tokens > 0, r.usage

# Streaming gives the same greedy text, with usage at the end.
parts, usage = [], None
for ch in c.chat.completions.create(model="any", messages=msgs, max_tokens=16, temperature=0,
                                    stream=True, stream_options={"include_usage": True}):
    if ch.usage:
        usage = ch.usage
    for choice in ch.choices:
        if choice.delta.content:
            parts.append(choice.delta.content)
assert "".join(parts) == text, ("".join(parts), text)
assert usage and usage.completion_tokens == r.usage.completion_tokens, usage
assert usage.prompt_tokens_details.cached_tokens > 0, usage

# Same seed, same sampled output; stop strings end the text before them.
a = c.chat.completions.create(model="any", messages=msgs, max_tokens=12, temperature=0.9, seed=7)
b = c.chat.completions.create(model="any", messages=msgs, max_tokens=12, temperature=0.9, seed=7)
assert a.choices[0].message.content == b.choices[0].message.content
s = c.chat.completions.create(model="any", messages=msgs, max_tokens=32, temperature=0, stop=[","])
assert "," not in s.choices[0].message.content and s.choices[0].finish_reason == "stop", s

# Logprobs.
lp = c.chat.completions.create(model="any", messages=msgs, max_tokens=3, temperature=0,
                               logprobs=True, top_logprobs=2)
content = lp.choices[0].logprobs.content
assert len(content) == 3 and len(content[0].top_logprobs) == 2, content
assert content[0].logprob <= 0

# Completions.
t = c.completions.create(model="any", prompt="The capital of France is", max_tokens=4, temperature=0)
assert t.choices[0].text and t.usage.completion_tokens == 4, t

# Models.
assert [m.id for m in c.models.list().data], "no models"

# Errors come back as the client's exceptions.
try:
    c.chat.completions.create(model="any", messages=msgs, n=2)
    raise SystemExit("n=2 accepted")
except openai.BadRequestError as e:
    assert e.status_code == 400
print("openai client: ok")
