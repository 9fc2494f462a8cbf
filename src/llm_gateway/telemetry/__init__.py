"""Observability: OpenTelemetry traces and GenAI metrics, Prometheus metrics, Helicone logs, request logs.

The pipeline fills one ``RequestRecord`` per request and calls ``Telemetry.record()`` once.
"""

from llm_gateway.telemetry.facade import Telemetry, TelemetrySettings
from llm_gateway.telemetry.logs import setup_logging
from llm_gateway.telemetry.record import AttemptRecord, RequestRecord

__all__ = ["AttemptRecord", "RequestRecord", "Telemetry", "TelemetrySettings", "setup_logging"]
