"""CPU cost of the Gemini adapter's pure translation (request, answer, stream event) and of Vertex AI's access
tokens (a cold fetch through google-auth against the fake token endpoint, in the worker thread; a cached read).

    .venv/bin/python -m bench.gemini_translate
"""

from __future__ import annotations

import asyncio
import tempfile
import time
import timeit
from pathlib import Path
from typing import Any

import orjson

from llm_gateway.providers.adapter import SecretMask
from llm_gateway.providers.gemini.answer import from_gemini_response
from llm_gateway.providers.gemini.auth import RotatingMask, TokenSource, load_credentials
from llm_gateway.providers.gemini.params import dropped_params
from llm_gateway.providers.gemini.stream import GeminiStreamTranslator
from llm_gateway.providers.gemini.translate import to_gemini_request
from tests.fakes import FakeProvider
from tests.fakes.google_token import TokenServer, write_service_account

MODEL = "gemini-2.5-flash"
BODY: dict[str, Any] = {
    "model": "gem",
    "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello."}],
    "max_completion_tokens": 4096,
    "temperature": 0.2,
}
SCHEMA = {"type": "object", "properties": {"a": {"type": "string"}}}
TOOLS_BODY = {
    **BODY,
    "tools": [{"type": "function", "function": {"name": f"t{i}", "parameters": SCHEMA}} for i in range(5)],
}
ANSWER = orjson.dumps(
    {
        "responseId": "x",
        "candidates": [{"index": 0, "finishReason": "STOP", "content": {"role": "model", "parts": [{"text": "Hi!"}]}}],
        "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 7, "totalTokenCount": 17},
    }
)
EVENT = orjson.dumps(
    {"responseId": "x", "candidates": [{"index": 0, "content": {"role": "model", "parts": [{"text": "word "}]}}]}
)


def per_call_us(call: Any, number: int = 20000) -> float:
    return min(timeit.repeat(call, number=number, repeat=5)) / number * 1e6


def translation() -> None:
    translator = GeminiStreamTranslator(model=MODEL, created=1, include_usage=True)
    rows = {
        "request (2 messages) -> bytes": lambda: orjson.dumps(to_gemini_request(BODY, MODEL)),
        "request with 5 tools -> bytes": lambda: orjson.dumps(to_gemini_request(TOOLS_BODY, MODEL)),
        "dropped_params": lambda: dropped_params(BODY, MODEL),
        "answer bytes -> chat.completion": lambda: from_gemini_response(orjson.loads(ANSWER), model=MODEL, created=1),
        "stream event -> chunk bytes": lambda: [orjson.dumps(c) for c in translator.feed(orjson.loads(EVENT))],
    }
    for name, call in rows.items():
        print(f"{name:34} {per_call_us(call):6.1f} µs")


async def tokens(key_file: Path) -> None:
    cold: list[float] = []
    for _ in range(20):
        source = TokenSource("gcp", load_credentials("gcp", str(key_file)), RotatingMask(SecretMask([])))
        started = time.perf_counter()
        await source.token(10)
        cold.append(time.perf_counter() - started)
        source.close()
    cold.sort()
    print(f"{'token fetch, cold (p50 / max)':34} {cold[10] * 1e3:6.1f} / {cold[-1] * 1e3:.1f} ms")
    source = TokenSource("gcp", load_credentials("gcp", str(key_file)), RotatingMask(SecretMask([])))
    await source.token(10)
    started, number = time.perf_counter(), 100_000
    for _ in range(number):
        await source.token(10)
    print(f"{'token read, cached':34} {(time.perf_counter() - started) / number * 1e6:6.2f} µs")
    source.close()


def main() -> None:
    translation()
    with FakeProvider("vertex") as fake, tempfile.TemporaryDirectory() as directory:
        server = getattr(fake.wire, "tokens", None)
        assert isinstance(server, TokenServer)
        key_file = write_service_account(Path(directory) / "sa.json", f"{fake.base_url}/token", server)
        asyncio.run(tokens(key_file))


if __name__ == "__main__":
    main()
