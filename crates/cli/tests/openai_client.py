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

# Structured output: response_format json_schema gives JSON that matches it.
import json

schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 20},
                                           "age": {"type": "integer", "minimum": 0, "maximum": 120}},
          "required": ["name", "age"], "additionalProperties": False}
j = c.chat.completions.create(
    model="any", messages=[{"role": "user", "content": "Describe a person."}], max_tokens=48,
    temperature=0, response_format={"type": "json_schema",
                                    "json_schema": {"name": "person", "schema": schema, "strict": True}})
person = json.loads(j.choices[0].message.content)
assert set(person) == {"name", "age"} and isinstance(person["age"], int), person
try:
    c.chat.completions.create(model="any", messages=msgs, response_format={
        "type": "json_schema", "json_schema": {"name": "bad", "schema": {"type": "strnig"}}})
    raise SystemExit("a bad schema was accepted")
except openai.BadRequestError as e:
    assert e.status_code == 400 and "strnig" in str(e), e

# Tool calls, round trip: a required call (constrained, so well-formed), the same call
# streamed as deltas, then the tool's result sent back for the final answer.
tools = [{"type": "function", "function": {
    "name": "get_weather", "description": "Current weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}},
                   "required": ["city"], "additionalProperties": False}}}]
ask = [{"role": "user", "content": "What is the weather in Paris?"}]
r = c.chat.completions.create(model="any", messages=ask, tools=tools, tool_choice="required",
                              parallel_tool_calls=False, max_tokens=40, temperature=0)
ch = r.choices[0]
assert ch.finish_reason == "tool_calls" and len(ch.message.tool_calls) == 1, ch
call = ch.message.tool_calls[0]
assert call.type == "function" and call.function.name == "get_weather" and call.id, call
args = json.loads(call.function.arguments)
assert isinstance(args["city"], str), args

calls, finish = {}, None
for chunk in c.chat.completions.create(model="any", messages=ask, tools=tools, stream=True,
                                       tool_choice={"type": "function", "function": {"name": "get_weather"}},
                                       parallel_tool_calls=False, max_tokens=40, temperature=0):
    for choice in chunk.choices:
        finish = choice.finish_reason or finish
        for d in choice.delta.tool_calls or []:
            acc = calls.setdefault(d.index, {"id": None, "name": None, "arguments": ""})
            if d.id:
                acc["id"] = d.id
            if d.function and d.function.name:
                acc["name"] = d.function.name
            if d.function and d.function.arguments:
                acc["arguments"] += d.function.arguments
assert finish == "tool_calls" and list(calls) == [0], (finish, calls)
assert calls[0]["id"] and calls[0]["name"] == "get_weather", calls
assert json.loads(calls[0]["arguments"]) == args, (calls, args)

history = ask + [ch.message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": '{"temp_c": 18, "sky": "sunny"}'}]
final = c.chat.completions.create(model="any", messages=history, tools=tools, max_tokens=24,
                                  temperature=0, tool_choice="none")
assert final.choices[0].message.content and not final.choices[0].message.tool_calls, final
print("openai client: ok")
