# llm-gateway's image: a build stage that turns the source into a wheel and installs it, with exactly the
# versions in requirements.lock, into a virtual environment; a slim final stage holding only that environment,
# run as an unprivileged user. Build from the repository's root: `docker build -t llm-gateway .`
# (BuildKit, the default builder since Docker 23, for the pip cache mount.)
# Both stages use the same base, so the venv's interpreter path (/usr/local/bin/python3.11) exists in the second.
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv
COPY pyproject.toml requirements.lock README.md ./
COPY src ./src
# Every runtime dependency has a manylinux wheel: no compiler in this stage either. The lock holds the dev
# dependencies too; as constraints (-c) they only pin what the wheel pulls in.
RUN --mount=type=cache,target=/root/.cache/pip \
    /opt/venv/bin/pip wheel --no-deps --wheel-dir /dist . \
    && /opt/venv/bin/pip install -c requirements.lock /dist/*.whl \
    && /opt/venv/bin/llm-gateway --help >/dev/null

FROM ${PYTHON_IMAGE} AS runtime
# A fixed numeric id: Kubernetes' runAsNonRoot can only check a numeric USER.
ARG GATEWAY_UID=10001
RUN groupadd --system --gid "${GATEWAY_UID}" gateway \
    && useradd --system --uid "${GATEWAY_UID}" --gid gateway --home-dir /data --no-create-home \
       --shell /usr/sbin/nologin gateway \
    && install -d -o gateway -g gateway -m 0750 /data
COPY --from=build /opt/venv /opt/venv
# /data is the working directory: the default DATABASE_URL (sqlite:///./gateway.db) lands there for a
# single container (`-v gateway-data:/data`); a replicated deployment sets DATABASE_URL to PostgreSQL.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOST=0.0.0.0 \
    PORT=5000
WORKDIR /data
USER 10001:10001
EXPOSE 5000
# The slim image has no curl: Python's own urllib asks /health (liveness). Readiness (/ready) is for the
# orchestrator's routing (compose's depends_on, Kubernetes' readinessProbe), not for restarting a container.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '5000') + '/health', timeout=4)"]
# uvicorn drains on SIGTERM: it stops accepting, lets requests in flight finish, then the gateway flushes.
STOPSIGNAL SIGTERM
CMD ["llm-gateway", "serve"]
