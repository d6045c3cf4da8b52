"""The Python package against the real SmolLM2 model (scripts/fetch-models.sh) and the CLI built
from the same sources (target/release/torchless, or $TORCHLESS_BIN)."""

import _thread
import json
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

import torchless

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("TORCHLESS_CACHE", Path.home() / ".cache" / "torchless"))
SMOL = CACHE / "models" / "smollm2-135m-instruct-q4_1.gguf"
CLI = Path(os.environ.get("TORCHLESS_BIN", ROOT / "target" / "release" / "torchless"))
PROMPT = "The three primary colors are"
USER = "Why is the sky blue?"


@pytest.fixture(scope="module")
def model():
    # Failing, not skipping, when the model is missing keeps CI honest.
    assert SMOL.exists(), f"{SMOL} is missing: run scripts/fetch-models.sh"
    with torchless.Model(str(SMOL), load="eager") as m:
        yield m


def cli(*args):
    assert CLI.exists(), f"{CLI} is missing: cargo build --release -p torchless"
    return subprocess.run(
        [str(CLI), *args], check=True, capture_output=True, text=True
    ).stdout


def test_greedy_text_equals_the_cli(model):
    ours = model.generate(PROMPT, max_tokens=24, temperature=0)
    theirs = cli("run", str(SMOL), "-p", PROMPT, "--raw", "--temp", "0", "-n", "24", "-q")
    assert ours == theirs
    assert len(ours) > 20


def test_greedy_chat_equals_the_cli(model):
    reply = model.chat([{"role": "user", "content": USER}], max_tokens=24, temperature=0)
    theirs = cli("run", str(SMOL), "-p", USER, "--temp", "0", "-n", "24", "-q")
    assert reply["content"] == theirs
    assert reply["reasoning"] is None
    assert reply["finish_reason"] == "length"
    assert reply["completion_tokens"] == 24
    # The prompt the CLI renders is the one the package renders.
    assert model.tokenize(model.chat_prompt(USER))[:3] == json.loads(
        cli("tokenize", str(SMOL), model.chat_prompt(USER), "--json")
    )[:3]


def test_chat_calls_reuse_the_cache(model):
    first_q = [{"role": "user", "content": "Name a fruit."}]
    first = model.chat(first_q, max_tokens=8, temperature=0)
    history = first_q + [
        {"role": "assistant", "content": first["content"]},
        {"role": "user", "content": "And a vegetable?"},
    ]
    second = model.chat(history, max_tokens=8, temperature=0)
    assert second["cached_tokens"] > first["prompt_tokens"] // 2
    assert second["prompt_tokens"] > second["cached_tokens"]
    # The same answer as from a cold cache.
    with torchless.Model(str(SMOL)) as cold:
        assert cold.chat(history, max_tokens=8, temperature=0)["content"] == second["content"]


def test_tokenize_equals_the_cli_and_round_trips(model):
    text = "Hello world, naïve café! 123"
    ids = model.tokenize(text)
    assert ids == json.loads(cli("tokenize", str(SMOL), text, "--json"))
    assert model.detokenize(ids) == text
    with pytest.raises(ValueError, match="outside the vocabulary"):
        model.detokenize([10**9])


def test_stream_equals_generate(model):
    for kwargs in ({"temperature": 0}, {"temperature": 0.8, "seed": 7}):
        pieces = list(model.stream(PROMPT, max_tokens=32, **kwargs))
        assert len(pieces) > 1
        assert "".join(pieces) == model.generate(PROMPT, max_tokens=32, **kwargs)


def test_stop_strings_and_limits(model):
    full = model.generate(PROMPT, max_tokens=24, temperature=0)
    cut = full.split(",")[0]
    assert model.generate(PROMPT, max_tokens=24, temperature=0, stop=",") == cut
    with pytest.raises(ValueError, match="max_tokens"):
        model.generate(PROMPT, max_tokens=0)
    with pytest.raises(ValueError, match="top"):
        model.generate(PROMPT, top_p=1.5)


def test_create_chat_completion_shape(model):
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Name a colour."},
    ]
    out = model.create_chat_completion(messages=messages, max_tokens=12, temperature=0)
    assert out["object"] == "chat.completion"
    assert out["id"].startswith("chatcmpl-")
    choice = out["choices"][0]
    assert choice["index"] == 0
    assert choice["message"]["role"] == "assistant"
    assert choice["finish_reason"] in ("stop", "length")
    usage = out["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]

    chunks = list(model.create_chat_completion(
        messages=messages, max_tokens=12, temperature=0, stream=True))
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    streamed = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert streamed == choice["message"]["content"]
    assert chunks[-1]["choices"][0]["finish_reason"] == choice["finish_reason"]
    streamed_usage = chunks[-1]["usage"]
    assert streamed_usage["completion_tokens"] == usage["completion_tokens"]
    assert streamed_usage["prompt_tokens"] == usage["prompt_tokens"]
    # The same request again finds all of its prompt but the last token in the cache.
    cached = streamed_usage["prompt_tokens_details"]["cached_tokens"]
    assert cached == usage["prompt_tokens"] - 1
    with pytest.raises(ValueError, match="role"):
        model.chat([{"role": "tool", "content": "x"}])


def test_errors_are_exceptions_with_the_engine_message(tmp_path):
    with pytest.raises(torchless.TorchlessError, match="no such file"):
        torchless.Model(str(tmp_path / "missing.gguf"))
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"garbage, not a model")
    with pytest.raises(torchless.TorchlessError, match="not a GGUF file"):
        torchless.Model(str(bad))
    assert issubclass(torchless.TorchlessError, RuntimeError)
    with pytest.raises(ValueError, match="load"):
        torchless.Model(str(SMOL), load="sometimes")
    with torchless.Model(str(SMOL), max_seq_len=16) as small:
        with pytest.raises(torchless.TorchlessError, match="does not fit the context of 16"):
            small.generate("word " * 40)


BOMB = (
    "{% set ns = namespace(s='xxxxxxxx') %}{% for i in range(64) %}"
    "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}"
)


def test_a_runaway_chat_template_raises_and_python_goes_on():
    with torchless.Model(str(SMOL), max_seq_len=256, chat_template=BOMB) as m:
        with pytest.raises(torchless.TorchlessError, match="template was stopped.*MiB"):
            m.chat([{"role": "user", "content": USER}], max_tokens=2)
        with pytest.raises(torchless.TorchlessError, match="stopped earlier"):
            m.chat([{"role": "user", "content": USER}], max_tokens=2)
        assert m.generate(PROMPT, max_tokens=2, temperature=0)
    custom = "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}<assistant>"
    with torchless.Model(str(SMOL), max_seq_len=256, chat_template=custom) as m:
        assert m.chat_prompt("hi") == "<user>hi<assistant>"


def test_closed_model_raises_and_the_context_manager_closes():
    with torchless.Model(str(SMOL), load="lazy", max_seq_len=256) as m:
        assert m.info()["load"] == "lazy"
        assert m.generate(PROMPT, max_tokens=2, temperature=0)
    assert m.closed
    for call in (lambda: m.generate(PROMPT), lambda: m.tokenize("x"), lambda: m.chat([])):
        with pytest.raises(torchless.TorchlessError, match="closed"):
            call()
    m.close()  # twice is fine


def test_two_threads_share_a_model(model):
    expected = model.generate(PROMPT, max_tokens=16, temperature=0)
    results, errors = [], []

    def work():
        try:
            for _ in range(2):
                results.append(model.generate(PROMPT, max_tokens=16, temperature=0))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    assert results == [expected] * 4


def test_the_gil_is_released_while_generating(model):
    ticks = []
    stop = threading.Event()

    def ticker():
        while not stop.is_set():
            ticks.append(time.monotonic())
            time.sleep(0.005)

    t = threading.Thread(target=ticker)
    t.start()
    try:
        model.generate(PROMPT, max_tokens=48, temperature=0)
    finally:
        stop.set()
        t.join()
    assert len(ticks) > 10


def test_ctrl_c_interrupts_generation(model):
    # interrupt_main() delivers what Ctrl-C would: a pending SIGINT for the main thread.
    timer = threading.Timer(0.5, _thread.interrupt_main)
    start = time.monotonic()
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        model.generate(PROMPT, max_tokens=None, temperature=0)  # would run to the context's end
    assert time.monotonic() - start < 10
    timer.cancel()
    # The model is still usable (the interrupted generation has let go of it).
    assert model.generate(PROMPT, max_tokens=4, temperature=0)


def test_abandoned_stream_stops(model):
    it = model.stream(PROMPT, max_tokens=None, temperature=0)
    assert next(it)
    it.close()
    assert model.generate(PROMPT, max_tokens=4, temperature=0)


def test_download_offline_reports_the_hub_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(torchless.TorchlessError, match="offline|HF_HUB_OFFLINE|cache"):
        torchless.download("nobody/nothing-GGUF", quant="Q4_K_M")
