"""deploy/compose.yaml and the files it mounts, checked offline: it parses, mounts only files that exist, pins
every image, sets only settings the gateway knows (with values it accepts), and its parts agree with each
other — Prometheus scrapes the gateway service on its port, the gateways export to the collector's receiver,
Grafana reads the Prometheus service and the dashboard directory, nginx's config passes `nginx -t`.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from llm_gateway.settings import load_settings
from tests.deploy_support import (
    COMPOSE,
    DEPLOY,
    EXIT_FLUSH_SECONDS,
    env_file_names,
    interpolate,
    load_yaml,
    require_tool,
    unknown_settings,
    variables,
)

GATEWAY_PORT = 5000


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = load_yaml(COMPOSE)["services"]
    return found


def example_env() -> dict[str, str]:
    return env_file_names(DEPLOY / ".env.example")


def gateway_env(services: dict[str, dict[str, Any]]) -> dict[str, str]:
    """The gateway's environment as compose would pass it, from .env.example's values and the defaults."""
    example = example_env()
    return {name: interpolate(str(value), example) for name, value in services["gateway"]["environment"].items()}


def mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Container path -> file or directory in the repository, for every bind mount (named volumes left out)."""
    found = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            found[target] = (COMPOSE.parent / source).resolve()
    return found


def test_every_bind_mount_exists_and_is_read_only(services: dict[str, dict[str, Any]]) -> None:
    bound = 0
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                bound += 1
                assert (COMPOSE.parent / source).exists(), f"{name} mounts {source}: no such file in the repository"
                assert volume.endswith(":ro"), f"{name}: {volume} is configuration, mounted read-only"
    assert bound >= 6


def test_every_image_is_pinned_to_a_version(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        image = service["image"]
        if "build" in service:
            assert (COMPOSE.parent / service["build"]["context"] / service["build"]["dockerfile"]).is_file()
            continue
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, f"{name}: {image} names no tag"
        # A release (postgres counts major.minor, the others major.minor.patch): not latest, not a bare major.
        assert re.match(r"v?\d+\.\d+", tag), f"{name}: {image} is not pinned to a release"


def test_the_stack_is_complete(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == set("migrate gateway nginx redis postgres otel-collector prometheus grafana".split())
    assert services["gateway"]["deploy"]["replicas"] >= 3
    assert services["migrate"]["command"] == ["llm-gateway", "db", "upgrade"]
    assert services["gateway"]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    assert services["nginx"]["depends_on"]["gateway"] == {"condition": "service_healthy"}
    check = " ".join(services["gateway"]["healthcheck"]["test"])
    assert f"127.0.0.1:{GATEWAY_PORT}/ready" in check, "replicas are healthy when they can serve: /ready"
    assert "postgres-data:/var/lib/postgresql/data" in services["postgres"]["volumes"]


def test_every_variable_is_documented_in_the_env_example() -> None:
    documented = example_env()
    missing = sorted(variables(COMPOSE.read_text()) - set(documented))
    assert not missing, f"deploy/.env.example does not mention {missing}"
    for name, value in documented.items():
        assert not value or not re.search(r"(?i)key|secret|password|salt", name), f"{name} has a value in the example"


def test_gateway_settings_are_known_and_valid(services: dict[str, dict[str, Any]]) -> None:
    env = gateway_env(services)
    assert not unknown_settings(env), "settings the gateway does not know (misspelt?)"
    config_path = mounts(services["gateway"])[env["GATEWAY_CONFIG"]]
    config = load_settings({**env, "GATEWAY_CONFIG": str(config_path)})
    assert config.source == str(config_path) and config.models
    settings = config.settings
    assert settings.workers > 1 and settings.redis_url is not None, "several workers share state through Redis"
    assert settings.database_url.get_secret_value().startswith("postgresql://")
    assert settings.prometheus_multiproc_dir in services["gateway"]["tmpfs"] or any(
        settings.prometheus_multiproc_dir.startswith(f"{tmpfs}/") for tmpfs in services["gateway"]["tmpfs"]
    ), "the metrics directory is writable under the read-only root"
    lb_address = services["nginx"]["networks"]["default"]["ipv4_address"]
    assert settings.trusted_proxies == [interpolate(lb_address, example_env())], "only nginx is believed"


def seconds(duration: str) -> int:
    match = re.fullmatch(r"(\d+)s", duration)
    assert match, duration
    return int(match[1])


def test_streams_may_finish_when_a_gateway_stops(services: dict[str, dict[str, Any]]) -> None:
    request_timeout = float(gateway_env(services)["REQUEST_TIMEOUT_SECONDS"])
    assert seconds(services["gateway"]["stop_grace_period"]) >= request_timeout + EXIT_FLUSH_SECONDS
    nginx = (DEPLOY / "nginx" / "nginx.conf").read_text()
    for directive in ("proxy_read_timeout", "proxy_send_timeout"):
        (value,) = re.findall(rf"{directive} (\d+)s;", nginx)
        assert int(value) > request_timeout, f"{directive}: the gateway's own timeout must come first"


def test_nginx_relays_streams_unbuffered_on_a_connection_per_request() -> None:
    nginx = (DEPLOY / "nginx" / "nginx.conf").read_text()
    needed = ["proxy_buffering off;", "proxy_http_version 1.1;", 'proxy_set_header Connection "";', "gzip off;"]
    for directive in [*needed, "server gateway:5000 resolve;"]:
        assert directive in nginx, directive
    # Kept-alive upstream connections lose POSTs when a gateway restarts (the scale-out test's finding).
    assert not re.search(r"^\s*keepalive\s+\d+;", nginx, re.M)


@pytest.mark.integration
def test_nginx_config_passes_nginx_t(tmp_path: Path) -> None:
    """Debian's nginx (1.22) predates `resolve` in an upstream (1.27.3, the image's 1.28 has it) and cannot
    resolve Docker's service names: both are replaced for the syntax check, nothing else is."""
    nginx = require_tool("nginx", "nginx")
    config = (DEPLOY / "nginx" / "nginx.conf").read_text()
    (tmp_path / "nginx.conf").write_text(config.replace("server gateway:5000 resolve;", "server 127.0.0.1:5000;"))
    paths = ["-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-e", str(tmp_path / "error.log")]
    command = [nginx, "-t", "-q", *paths, "-g", f"pid {tmp_path / 'nginx.pid'};"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr


def test_prometheus_scrapes_every_gateway_directly() -> None:
    config = load_yaml(DEPLOY / "prometheus" / "prometheus.yml")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    (discovery,) = jobs["llm-gateway"]["dns_sd_configs"]
    assert discovery["names"] == ["gateway"] and discovery["type"] == "A", "each replica, not the load balancer"
    assert discovery["port"] == GATEWAY_PORT and jobs["llm-gateway"]["metrics_path"] == "/metrics"


def test_prometheus_targets_are_compose_services(services: dict[str, dict[str, Any]]) -> None:
    config = load_yaml(DEPLOY / "prometheus" / "prometheus.yml")
    for job in config["scrape_configs"]:
        hosts = [name for sd in job.get("dns_sd_configs", []) for name in sd["names"]]
        hosts += [target.split(":")[0] for static in job.get("static_configs", []) for target in static["targets"]]
        for host in hosts:
            assert host in services or host == "localhost", f"{job['job_name']}: {host} is no compose service"
    collector = load_yaml(DEPLOY / "otel" / "collector.yaml")
    (otel_job,) = [job for job in config["scrape_configs"] if job["job_name"] == "otel-collector"]
    port = collector["exporters"]["prometheus"]["endpoint"].rpartition(":")[2]
    assert otel_job["static_configs"][0]["targets"] == [f"otel-collector:{port}"]


def test_gateways_export_to_the_collectors_receiver(services: dict[str, dict[str, Any]]) -> None:
    collector = load_yaml(DEPLOY / "otel" / "collector.yaml")
    endpoint = gateway_env(services)["OTEL_EXPORTER_OTLP_ENDPOINT"]
    match = re.fullmatch(r"http://([\w-]+):(\d+)", endpoint)
    assert match and match[1] in services, endpoint
    assert collector["receivers"]["otlp"]["protocols"]["http"]["endpoint"].endswith(f":{match[2]}"), "OTLP/HTTP"
    mount = mounts(services[match[1]])
    assert mount["/etc/otelcol/config.yaml"] == (DEPLOY / "otel" / "collector.yaml").resolve()
    for name, pipeline in collector["service"]["pipelines"].items():
        for kind in ("receivers", "processors", "exporters"):
            for component in pipeline.get(kind, []):
                assert component in collector[kind], f"pipeline {name}: {kind} {component} is not defined"


def test_grafana_is_provisioned_with_prometheus_and_the_dashboard(services: dict[str, dict[str, Any]]) -> None:
    grafana = mounts(services["grafana"])
    provisioning = DEPLOY / "grafana" / "provisioning"
    (source,) = load_yaml(provisioning / "datasources" / "prometheus.yaml")["datasources"]
    assert source["url"] == "http://prometheus:9090" and source["uid"] == "prometheus"
    (provider,) = load_yaml(provisioning / "dashboards" / "llm-gateway.yaml")["providers"]
    dashboards = grafana[provider["options"]["path"]]
    assert (dashboards / "llm-gateway.json").is_file()
    assert grafana["/etc/grafana/provisioning/datasources"] == (provisioning / "datasources").resolve()
    assert grafana["/etc/grafana/provisioning/dashboards"] == (provisioning / "dashboards").resolve()
    home = services["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{provider['options']['path']}/llm-gateway.json"
