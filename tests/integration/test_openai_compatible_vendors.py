"""The OpenAI-compatible vendors the README lists, each configured as the README says (``type: openai``, its
``base_url``'s path, its cap's name) against the fake OpenAI served under that path: a chat and a stream through
the gateway with the official openai SDK."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import orjson
import pytest

from tests.conftest import StartGateway
from tests.fakes import FakeProvider
from tests.sdk_support import MakeSdk
from tests.vendor_support import VENDORS, Vendor

pytestmark = pytest.mark.integration

HELLO = [{"role": "user", "content": "Say hello."}]


@pytest.fixture(params=VENDORS, ids=[v.name for v in VENDORS])
def vendor(request: pytest.FixtureRequest) -> Vendor:
    chosen: Vendor = request.param
    return chosen


@pytest.fixture
def vendor_fake(vendor: Vendor) -> Iterator[FakeProvider]:
    with FakeProvider("openai", base_path=urlsplit(vendor.base_url).path, refuses=vendor.refuses) as fake:
        yield fake


def test_a_vendor_configured_as_the_readme_says_answers_chat_and_streams(
    start_gateway: StartGateway, fake_env: dict[str, str], sdk: MakeSdk, vendor: Vendor, vendor_fake: FakeProvider,
    tmp_path: Path,
) -> None:  # fmt: skip
    provider = {"type": "openai", "base_url": vendor_fake.base_url, "api_key": vendor_fake.api_key,
                "max_tokens_field": vendor.max_tokens_field, "stream_options": vendor.stream_options}  # fmt: skip
    config = {
        "providers": {vendor.name: provider},
        "models": {"chat": [{"provider": vendor.name, "model": vendor.model}]},
    }
    path = tmp_path / "gateway.yaml"
    path.write_bytes(orjson.dumps(config))
    client = sdk(start_gateway({**fake_env, "GATEWAY_CONFIG": str(path)}))

    raw = client.chat.completions.with_raw_response.create(model="chat", messages=HELLO, max_completion_tokens=40)
    assert raw.parse().choices[0].message.content == "Hello from openai"
    assert raw.headers["x-gateway-provider"] == vendor.name
    chunks = list(client.chat.completions.create(model="chat", messages=HELLO, stream=True, max_completion_tokens=30))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello from openai"

    expected_path = urlsplit(vendor.base_url).path + "/chat/completions"
    plain, streamed = vendor_fake.chat_requests
    assert (plain.path, streamed.path) == (expected_path, expected_path)
    assert plain.headers["authorization"] == f"Bearer {vendor_fake.api_key}"
    assert plain.body == {"model": vendor.model, "messages": HELLO, vendor.max_tokens_field: 40}
    assert streamed.body["model"] == vendor.model and streamed.body["stream"] is True
    assert streamed.body[vendor.max_tokens_field] == 30
    assert ("stream_options" in streamed.body) == (vendor.stream_options == "send")
