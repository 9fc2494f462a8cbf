"""OpenTelemetry tracer and meter set-up from the standard ``OTEL_*`` variables, passed in as a mapping.

Export is on for a signal when ``OTEL_{TRACES,METRICS}_EXPORTER`` names ``otlp``/``console``, or when
it is unset and an OTLP endpoint is configured; ``OTEL_SDK_DISABLED=true`` turns everything off.
When off, ``setup_otel`` returns None and imports nothing from the SDK: the per-request cost is one
``is None`` test. Protocol (``OTEL_EXPORTER_OTLP[_TRACES|_METRICS]_PROTOCOL``): ``http/protobuf``
(default) or ``grpc``. ``OTEL_EXPORTER_OTLP_TIMEOUT`` is read in milliseconds, as the spec says.
One default differs from the SDK's: ``OTEL_METRICS_EXEMPLAR_FILTER`` unset means ``always_off``
(``exemplar_filter`` says why); ``trace_based`` or ``always_on`` must be asked for.
Providers are kept private (never installed as OTel globals), so tests and reloads do not collide.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.metrics import Meter
    from opentelemetry.sdk.metrics import ExemplarFilter, MeterProvider
    from opentelemetry.sdk.metrics.export import MetricExporter, MetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.sdk.trace.sampling import Sampler
    from opentelemetry.trace import Tracer

SCOPE = "llm_gateway"
_DEFAULT_SERVICE = "llm-gateway"
_PROTOCOLS = ("http/protobuf", "grpc")


class OtelConfigError(ValueError):
    """An OTEL_* variable holds a value the gateway cannot use; the message names it."""


@dataclass(slots=True)
class OtelPipeline:
    """The SDK providers the gateway built; either may be None when that signal is off."""

    tracer_provider: TracerProvider | None
    meter_provider: MeterProvider | None

    @property
    def tracer(self) -> Tracer | None:
        return self.tracer_provider.get_tracer(SCOPE) if self.tracer_provider else None

    @property
    def meter(self) -> Meter | None:
        return self.meter_provider.get_meter(SCOPE) if self.meter_provider else None

    def force_flush(self, timeout_millis: int = 5000) -> None:
        if self.tracer_provider:
            self.tracer_provider.force_flush(timeout_millis)
        if self.meter_provider:
            self.meter_provider.force_flush(timeout_millis)

    def shutdown(self) -> None:
        """Flush and stop the exporters (blocking: run it in a thread from async code)."""
        if self.tracer_provider:
            self.tracer_provider.shutdown()
        if self.meter_provider:
            self.meter_provider.shutdown()


def setup_otel(
    env: Mapping[str, str],
    *,
    service_version: str = "",
    span_processor: SpanProcessor | None = None,
    metric_reader: MetricReader | None = None,
) -> OtelPipeline | None:
    """Build tracer/meter providers from ``env``; None when neither signal is exported.

    ``span_processor``/``metric_reader`` replace the exporter the environment would choose (tests
    pass in-memory ones) and switch that signal on.
    """
    if _flag(env, "OTEL_SDK_DISABLED"):
        return None
    traces = span_processor is not None or _exporting(env, "TRACES")
    metrics = metric_reader is not None or _exporting(env, "METRICS")
    if not traces and not metrics:
        return None
    resource = _resource(env, service_version)
    tracer_provider = _tracer_provider(env, resource, span_processor) if traces else None
    meter_provider = _meter_provider(env, resource, metric_reader) if metrics else None
    return OtelPipeline(tracer_provider, meter_provider)


# -- which exporters --------------------------------------------------------------------------------


def _flag(env: Mapping[str, str], name: str) -> bool:
    return env.get(name, "").strip().lower() in ("true", "1", "yes")


def _get(env: Mapping[str, str], signal: str, suffix: str) -> str | None:
    """``OTEL_EXPORTER_OTLP_<SIGNAL>_<suffix>``, else the generic ``OTEL_EXPORTER_OTLP_<suffix>``."""
    value = env.get(f"OTEL_EXPORTER_OTLP_{signal}_{suffix}") or env.get(f"OTEL_EXPORTER_OTLP_{suffix}")
    return value.strip() if value else None


def _exporter_names(env: Mapping[str, str], signal: str) -> list[str]:
    raw = env.get(f"OTEL_{signal}_EXPORTER")
    if raw is None:
        return ["otlp"] if _get(env, signal, "ENDPOINT") else []
    names = [name.strip().lower() for name in raw.split(",") if name.strip()]
    unknown = [name for name in names if name not in ("otlp", "console", "none")]
    if unknown:
        raise OtelConfigError(f"OTEL_{signal}_EXPORTER: unsupported exporter {unknown[0]!r} (otlp, console, none)")
    return [name for name in names if name != "none"]


def _exporting(env: Mapping[str, str], signal: str) -> bool:
    return bool(_exporter_names(env, signal))


def protocol(env: Mapping[str, str], signal: str) -> str:
    value = (_get(env, signal, "PROTOCOL") or "http/protobuf").lower()
    if value not in _PROTOCOLS:
        raise OtelConfigError(f"OTEL_EXPORTER_OTLP_PROTOCOL: {value!r} is not supported (http/protobuf or grpc)")
    return value


def parse_headers(raw: str | None) -> dict[str, str]:
    """``k1=v1,k2=v2`` with URL-encoded values (the OTLP exporter spec's format)."""
    headers: dict[str, str] = {}
    for item in (raw or "").split(","):
        name, sep, value = item.partition("=")
        if sep and name.strip():
            headers[urllib.parse.unquote(name.strip()).lower()] = urllib.parse.unquote(value.strip())
    return headers


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise OtelConfigError(f"{name}: {raw!r} is not a number") from None
    if value < 0:
        raise OtelConfigError(f"{name}: must not be negative")
    return value


def endpoint(env: Mapping[str, str], signal: str, proto: str) -> str:
    """The URL the exporter posts to: signal-specific as is, else the generic one plus ``/v1/<signal>``."""
    specific = env.get(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT")
    if specific:
        return specific.strip()
    generic = (env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or "").strip()
    if proto == "grpc":
        return generic or "http://localhost:4317"
    return f"{(generic or 'http://localhost:4318').rstrip('/')}/v1/{signal.lower()}"


def _exporter_kwargs(env: Mapping[str, str], signal: str, proto: str) -> dict[str, Any]:
    url = endpoint(env, signal, proto)
    specific_timeout = f"OTEL_EXPORTER_OTLP_{signal}_TIMEOUT"
    timeout_name = specific_timeout if env.get(specific_timeout) else "OTEL_EXPORTER_OTLP_TIMEOUT"
    kwargs: dict[str, Any] = {
        "endpoint": url,
        "headers": parse_headers(_get(env, signal, "HEADERS")),
        "timeout": _number(env, timeout_name, 10_000) / 1000,
    }
    compression = (_get(env, signal, "COMPRESSION") or "none").lower()
    if compression not in ("none", "gzip", "deflate") or (proto == "grpc" and compression == "deflate"):
        raise OtelConfigError(f"OTEL_EXPORTER_OTLP_COMPRESSION: unsupported value {compression!r}")
    if proto == "grpc":
        _grpc_kwargs(env, signal, url, compression, kwargs)
    else:
        from opentelemetry.exporter.otlp.proto.http import Compression

        kwargs["compression"] = Compression(compression)
        for suffix, name in (
            ("CERTIFICATE", "certificate_file"),
            ("CLIENT_KEY", "client_key_file"),
            ("CLIENT_CERTIFICATE", "client_certificate_file"),
        ):
            if value := _get(env, signal, suffix):
                kwargs[name] = value
    return kwargs


def _grpc_kwargs(env: Mapping[str, str], signal: str, url: str, compression: str, kwargs: dict[str, Any]) -> None:
    import grpc  # type: ignore[import-untyped, unused-ignore]

    kwargs["compression"] = grpc.Compression.Gzip if compression == "gzip" else grpc.Compression.NoCompression
    insecure = _get(env, signal, "INSECURE")
    kwargs["insecure"] = insecure.lower() == "true" if insecure else url.startswith("http://")
    certificate = _get(env, signal, "CERTIFICATE")
    if certificate and not kwargs["insecure"]:
        key, chain = _get(env, signal, "CLIENT_KEY"), _get(env, signal, "CLIENT_CERTIFICATE")
        kwargs["credentials"] = grpc.ssl_channel_credentials(
            _read(certificate), _read(key) if key else None, _read(chain) if chain else None
        )


def _read(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


# -- providers --------------------------------------------------------------------------------------


def _resource(env: Mapping[str, str], service_version: str) -> Resource:
    from opentelemetry.sdk.resources import Resource

    attributes: dict[str, str] = {"telemetry.sdk.language": "python", "telemetry.sdk.name": "opentelemetry"}
    for item in (env.get("OTEL_RESOURCE_ATTRIBUTES") or "").split(","):
        name, sep, value = item.partition("=")
        if sep and name.strip():
            attributes[name.strip()] = urllib.parse.unquote(value.strip())
    attributes["service.name"] = env.get("OTEL_SERVICE_NAME") or attributes.get("service.name") or _DEFAULT_SERVICE
    if service_version:
        attributes.setdefault("service.version", service_version)
    return Resource(attributes)


def sampler(env: Mapping[str, str]) -> Sampler:
    from opentelemetry.sdk.trace import sampling

    name = (env.get("OTEL_TRACES_SAMPLER") or "parentbased_always_on").strip().lower()
    raw_ratio = env.get("OTEL_TRACES_SAMPLER_ARG") or "1.0"
    try:
        ratio = float(raw_ratio)
    except ValueError:
        raise OtelConfigError(f"OTEL_TRACES_SAMPLER_ARG: {raw_ratio!r} is not a number") from None
    samplers: dict[str, Sampler] = {
        "always_on": sampling.ALWAYS_ON,
        "always_off": sampling.ALWAYS_OFF,
        "traceidratio": sampling.TraceIdRatioBased(ratio),
        "parentbased_always_on": sampling.ParentBased(sampling.ALWAYS_ON),
        "parentbased_always_off": sampling.ParentBased(sampling.ALWAYS_OFF),
        "parentbased_traceidratio": sampling.ParentBased(sampling.TraceIdRatioBased(ratio)),
    }
    if name not in samplers:
        raise OtelConfigError(f"OTEL_TRACES_SAMPLER: unsupported sampler {name!r}")
    return samplers[name]


def _span_exporters(env: Mapping[str, str]) -> list[SpanExporter]:
    exporters: list[SpanExporter] = []
    for name in _exporter_names(env, "TRACES"):
        if name == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            exporters.append(ConsoleSpanExporter())
        elif protocol(env, "TRACES") == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter

            exporters.append(GrpcSpanExporter(**_exporter_kwargs(env, "TRACES", "grpc")))
        else:
            from llm_gateway.telemetry.otlp_spans import DirectOtlpSpanExporter

            exporters.append(DirectOtlpSpanExporter(**_exporter_kwargs(env, "TRACES", "http/protobuf")))
    return exporters


def _tracer_provider(env: Mapping[str, str], resource: Resource, processor: SpanProcessor | None) -> TracerProvider:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(sampler=sampler(env), resource=resource, shutdown_on_exit=False)
    if processor is not None:
        provider.add_span_processor(processor)
        return provider
    for exporter in _span_exporters(env):
        provider.add_span_processor(
            BatchSpanProcessor(
                exporter,
                max_queue_size=int(_number(env, "OTEL_BSP_MAX_QUEUE_SIZE", 2048)),
                schedule_delay_millis=_number(env, "OTEL_BSP_SCHEDULE_DELAY", 5000),
                max_export_batch_size=int(_number(env, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512)),
                export_timeout_millis=_number(env, "OTEL_BSP_EXPORT_TIMEOUT", 30_000),
            )
        )
    return provider


def _metric_exporter(env: Mapping[str, str], name: str) -> MetricExporter:
    from opentelemetry.sdk.metrics import Counter, Histogram
    from opentelemetry.sdk.metrics.export import AggregationTemporality, ConsoleMetricExporter

    if name == "console":
        return ConsoleMetricExporter()
    preference = (env.get("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE") or "cumulative").strip().lower()
    if preference not in ("cumulative", "delta", "lowmemory"):
        raise OtelConfigError(f"OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE: unsupported {preference!r}")
    temporality = AggregationTemporality.CUMULATIVE if preference == "cumulative" else AggregationTemporality.DELTA
    temporalities: dict[type, AggregationTemporality] = {Counter: temporality, Histogram: temporality}
    if protocol(env, "METRICS") == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetricExporter

        grpc_kwargs = _exporter_kwargs(env, "METRICS", "grpc")
        return GrpcMetricExporter(preferred_temporality=temporalities, **grpc_kwargs)
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetricExporter

    http_kwargs = _exporter_kwargs(env, "METRICS", "http/protobuf")
    return HttpMetricExporter(preferred_temporality=temporalities, **http_kwargs)


def _meter_provider(env: Mapping[str, str], resource: Resource, reader: MetricReader | None) -> MeterProvider:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    readers: list[MetricReader] = []
    if reader is not None:
        readers.append(reader)
    else:
        for name in _exporter_names(env, "METRICS"):
            readers.append(
                PeriodicExportingMetricReader(
                    _metric_exporter(env, name),
                    export_interval_millis=_number(env, "OTEL_METRIC_EXPORT_INTERVAL", 60_000),
                    export_timeout_millis=_number(env, "OTEL_METRIC_EXPORT_TIMEOUT", 30_000),
                )
            )
    return MeterProvider(
        metric_readers=readers, resource=resource, shutdown_on_exit=False, exemplar_filter=exemplar_filter(env)
    )


def exemplar_filter(env: Mapping[str, str]) -> ExemplarFilter:
    """``OTEL_METRICS_EXEMPLAR_FILTER`` from ``env`` (the SDK would read ``os.environ`` itself); unset: off.

    Why off by default, where the SDK defaults to ``trace_based``: every GenAI histogram record runs
    inside the request's sampled server span, so ``trace_based`` offers each measurement to the
    exemplar reservoir (a few µs each, ~3.5 per request, on the event loop) for a trace link that few
    OTLP metric backends show. Setting the variable restores the SDK's behaviour.
    """
    from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, AlwaysOnExemplarFilter, TraceBasedExemplarFilter

    name = (env.get("OTEL_METRICS_EXEMPLAR_FILTER") or "always_off").strip().lower()
    filters: dict[str, type[ExemplarFilter]] = {
        "always_off": AlwaysOffExemplarFilter,
        "always_on": AlwaysOnExemplarFilter,
        "trace_based": TraceBasedExemplarFilter,
    }
    if name not in filters:
        raise OtelConfigError(
            f"OTEL_METRICS_EXEMPLAR_FILTER: unsupported filter {name!r} (always_off, always_on, trace_based)"
        )
    return filters[name]()
