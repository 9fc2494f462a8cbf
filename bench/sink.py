"""A loopback HTTP sink that accepts anything: an OTLP/HTTP collector and a Helicone for the bench.

``python bench/sink.py --port 4318`` answers 200 to every POST (OTLP's ``/v1/traces`` and
``/v1/metrics``, Helicone's ``/custom/v1/log``) so the gateway can be measured with its
exporters on: ``bench/run.py --gateway-env OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 ...``.
"""

from __future__ import annotations

import argparse

from aiohttp import web


async def accept(request: web.Request) -> web.Response:
    await request.read()
    if request.path.startswith("/v1/"):
        return web.Response(body=b"", content_type="application/x-protobuf")
    return web.json_response({"ok": True})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=4318)
    args = parser.parse_args()
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", accept)
    web.run_app(app, host="127.0.0.1", port=args.port, print=lambda *_: print(f"READY {args.port}", flush=True))


if __name__ == "__main__":
    main()
