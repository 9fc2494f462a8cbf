"""The request pipeline: identify -> admit -> cache -> route -> settle -> record (docs/architecture.md).

``call`` holds the types every step shares (the request on its way, its answers), ``steps`` the
steps in order and the two entry points, ``stream`` the owner of a stream's lifecycle and ``meter``
what a stream's owner measures as it relays. Imports point one way: steps -> stream -> meter, call.
Every API surface runs through the same steps; what differs per surface is its codec
(``llm_gateway.surfaces``), passed in with each request.
"""

from llm_gateway.pipeline.call import Answer, CachePolicy, Call, StreamAnswer, describe_answer
from llm_gateway.pipeline.steps import Pipeline

__all__ = ["Answer", "CachePolicy", "Call", "Pipeline", "StreamAnswer", "describe_answer"]
