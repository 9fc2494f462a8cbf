"""What a Bedrock request costs in CPU: translation, dropped_params, a SigV4 signature (botocore), the whole signed
head, a bearer head, and decoding + translating ConverseStream frames (botocore's parser). No network.

    .venv/bin/python bench/bedrock_cost.py
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, cast

import orjson
from pydantic import SecretStr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llm_gateway.errors import UpstreamStreamError
from llm_gateway.http import UpstreamResponse
from llm_gateway.providers.bedrock.client import BedrockProvider, BedrockStream
from llm_gateway.providers.bedrock.stream import ConverseStreamTranslator
from llm_gateway.providers.bedrock.translate import to_converse_request
from llm_gateway.settings import ProviderConfig
from tests.fakes.bedrock_wire import event_frame

N = 20_000
MODEL = "anthropic.claude-3-5-haiku-20241022-v1:0"
BODY: dict[str, Any] = {
    "model": "claude",
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Say hello in three languages."},
    ],
    "max_completion_tokens": 256,
    "temperature": 0.3,
}


def cpu_us(fn: Callable[[], object], n: int = N) -> float:
    for _ in range(500):
        fn()
    start = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - start) / n * 1e6


async def async_cpu_us(fn: Callable[[], Any], n: int = N) -> float:
    for _ in range(500):
        await fn()
    start = time.process_time()
    for _ in range(n):
        await fn()
    return (time.process_time() - start) / n * 1e6


class Body:
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk

    def release(self) -> None:
        pass


async def main() -> None:
    signed = BedrockProvider(
        "bedrock",
        ProviderConfig(
            type="bedrock",
            region="us-east-1",
            aws_access_key_id=SecretStr("AKIAEXAMPLE000000000"),
            aws_secret_access_key=SecretStr("x" * 40),
            aws_session_token=SecretStr("t" * 400),
        ),
    )
    keyed = BedrockProvider("keyed", ProviderConfig(type="bedrock", region="us-east-1", api_key=SecretStr("k" * 100)))
    payload = orjson.dumps(to_converse_request(BODY, MODEL, default_max_tokens=4096))
    assert signed._signer is not None
    signer, route = signed._signer, signed._route(MODEL, False)
    auth = await signer.current(5)
    rows = {
        "translate (to_converse_request + orjson.dumps)": cpu_us(
            lambda: orjson.dumps(to_converse_request(BODY, MODEL, default_max_tokens=4096))
        ),
        "dropped_params": cpu_us(lambda: signed.dropped_params(BODY, MODEL)),
        "SigV4 signature (botocore SigV4Auth.add_auth on an AWSRequest)": cpu_us(
            lambda: signer.sign(auth, route.url, route.signed_headers, payload)
        ),
        "whole signed head (credentials check + signature + head bytes)": await async_cpu_us(
            lambda: signed._signed_head(MODEL, payload, stream=False, timeout=5)
        ),
        "bearer head (Bedrock API key: cached)": await async_cpu_us(
            lambda: keyed._signed_head(MODEL, payload, stream=False, timeout=5)
        ),
    }
    frames = 2000
    data = b"".join(
        event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": " word"}}) for _ in range(frames)
    )
    chunks = [data[i : i + 4096] for i in range(0, len(data), 4096)]
    loop = asyncio.get_running_loop()
    start = time.process_time()
    for _ in range(10):
        translator = ConverseStreamTranslator(model="m", created=0, include_usage=False)
        stream = BedrockStream(keyed, cast(UpstreamResponse, Body(chunks)), loop.time() + 60, translator)
        with contextlib.suppress(UpstreamStreamError):  # the body ends without messageStop: expected here
            async for _ in stream:
                pass
    rows["one ConverseStream text delta: frame decoded + chunk translated"] = (
        (time.process_time() - start) / (10 * frames) * 1e6
    )
    for name, value in rows.items():
        print(f"{value:8.1f} µs  {name}")
    await signed.aclose()
    await keyed.aclose()


if __name__ == "__main__":
    asyncio.run(main())
