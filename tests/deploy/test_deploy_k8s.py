"""deploy/k8s, checked offline: `kubectl kustomize` renders it, every manifest validates against Kubernetes'
own schemas (kubernetes-validate's bundled copies, strict: an unknown field fails), and the pieces agree —
probes on /health and /ready, a grace period that outlasts a stream, selectors that select the pods, the
Secret's keys, the settings the gateway knows, the image's user.

kubectl is on this machine's image; .ci/run installs Debian's when it is missing, and the test fails, never
skips, without it.
"""

from __future__ import annotations

import re
import subprocess
from typing import Any

import kubernetes_validate
import pytest

from llm_gateway.settings import load_settings
from tests.deploy_support import (
    EXIT_FLUSH_SECONDS,
    K8S,
    REPO,
    load_all,
    load_yaml,
    require_tool,
    unknown_settings,
)

# The oldest Kubernetes release still maintained upstream when these manifests were written; the bundled
# schemas go up to the newest, and the manifests use nothing newer than this.
KUBERNETES_VERSION = "1.31"
SECRET = "llm-gateway"
REQUIRED_SECRETS = {"DATABASE_URL", "REDIS_URL"}

Manifest = dict[str, Any]


@pytest.fixture(scope="module")
def rendered() -> dict[tuple[str, str], Manifest]:
    kubectl = require_tool("kubectl", "kubernetes-client")
    done = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"kubectl kustomize deploy/k8s failed:\n{done.stderr}"
    assert "Warning" not in done.stderr, done.stderr
    return {(doc["kind"], doc["metadata"]["name"]): doc for doc in load_all(done.stdout)}


def by_kind(rendered: dict[tuple[str, str], Manifest], kind: str) -> Manifest:
    (manifest,) = [doc for (found, _), doc in rendered.items() if found == kind]
    return manifest


def secret_example() -> Manifest:
    manifest: Manifest = load_yaml(K8S / "secret.example.yaml")
    return manifest


@pytest.mark.integration
def test_renders_every_kind(rendered: dict[tuple[str, str], Manifest]) -> None:
    kinds = sorted(kind for kind, _ in rendered)
    expected = "Namespace ServiceAccount ConfigMap ConfigMap Deployment Service HorizontalPodAutoscaler"
    assert kinds == sorted([*expected.split(), "PodDisruptionBudget", "Job"])
    assert {doc["metadata"].get("namespace") for (kind, _), doc in rendered.items() if kind != "Namespace"} == {
        "llm-gateway"
    }


@pytest.mark.integration
def test_every_manifest_validates_against_kubernetes_schemas(rendered: dict[tuple[str, str], Manifest]) -> None:
    for (kind, name), manifest in [*rendered.items(), (("Secret", "example"), secret_example())]:
        try:
            kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(part) for part in error.path)
            pytest.fail(f"{kind}/{name}: {path}: {error.message}")
        # A kind without a schema raises SchemaNotFoundError: a failure too, never a warning.


def test_the_validator_rejects_a_misspelt_field() -> None:
    """Strict validation is what catches a typo: a guard that the check above is not vacuous."""
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}, "spec": {"prots": []}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(service, KUBERNETES_VERSION, strict=True)


def container(pod: Manifest, name: str) -> Manifest:
    (found,) = [item for item in pod["spec"]["containers"] if item["name"] == name]
    return found


@pytest.mark.integration
def test_probes_and_stopping(rendered: dict[tuple[str, str], Manifest]) -> None:
    deployment = by_kind(rendered, "Deployment")
    pod = deployment["spec"]["template"]
    gateway = container(pod, "gateway")
    (port,) = gateway["ports"]
    assert port == {"name": "http", "containerPort": 5000}
    assert gateway["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert gateway["startupProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert gateway["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0

    (sleep,) = re.findall(r"\d+", " ".join(gateway["lifecycle"]["preStop"]["exec"]["command"]))
    settings = settings_map(rendered)
    needed = int(sleep) + float(settings["REQUEST_TIMEOUT_SECONDS"]) + EXIT_FLUSH_SECONDS
    grace = pod["spec"]["terminationGracePeriodSeconds"]
    assert needed <= grace <= 900, "the grace period lets a stream finish, and no more than that"


@pytest.mark.integration
def test_pods_are_non_root_with_a_read_only_root(rendered: dict[tuple[str, str], Manifest]) -> None:
    (user,) = re.findall(r"^USER (\d+):(\d+)$", (REPO / "Dockerfile").read_text(), re.MULTILINE)
    for kind, name in (("Deployment", "gateway"), ("Job", "migrate")):
        pod = by_kind(rendered, kind)["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert (str(pod["securityContext"]["runAsUser"]), str(pod["securityContext"]["runAsGroup"])) == user
        assert pod["automountServiceAccountToken"] is False
        context = container({"spec": pod}, name)["securityContext"]
        assert context["readOnlyRootFilesystem"] is True and context["allowPrivilegeEscalation"] is False
        assert context["capabilities"]["drop"] == ["ALL"]
        assert "limits" in container({"spec": pod}, name)["resources"]


@pytest.mark.integration
def test_selectors_select_the_gateway_pods(rendered: dict[tuple[str, str], Manifest]) -> None:
    deployment = by_kind(rendered, "Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert by_kind(rendered, "Service")["spec"]["selector"].items() <= labels.items()
    assert by_kind(rendered, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert by_kind(rendered, "Service")["spec"]["ports"][0]["targetPort"] == "http"
    hpa = by_kind(rendered, "HorizontalPodAutoscaler")["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "llm-gateway"}
    assert hpa["minReplicas"] >= 2, "the PodDisruptionBudget leaves one running"
    assert "cpu" in container(deployment["spec"]["template"], "gateway")["resources"]["requests"], "HPA measures it"
    job = by_kind(rendered, "Job")["spec"]["template"]["spec"]
    assert container({"spec": job}, "migrate")["args"] == ["llm-gateway", "db", "upgrade"]


def settings_map(rendered: dict[tuple[str, str], Manifest]) -> dict[str, str]:
    deployment = by_kind(rendered, "Deployment")
    (source,) = container(deployment["spec"]["template"], "gateway")["envFrom"]
    data: dict[str, str] = rendered[("ConfigMap", source["configMapRef"]["name"])]["data"]
    return data


def secret_refs(rendered: dict[tuple[str, str], Manifest]) -> dict[str, Manifest]:
    refs = {}
    for kind in ("Deployment", "Job"):
        for item in by_kind(rendered, kind)["spec"]["template"]["spec"]["containers"]:
            for variable in item.get("env", []):
                ref = variable.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert variable["name"] == ref["key"]
                    refs[ref["key"]] = ref
    return refs


@pytest.mark.integration
def test_secret_keys_match_the_example(rendered: dict[tuple[str, str], Manifest]) -> None:
    refs = secret_refs(rendered)
    example = secret_example()
    assert (example["metadata"]["name"], example["metadata"]["namespace"]) == (SECRET, "llm-gateway")
    assert {ref["name"] for ref in refs.values()} == {SECRET}
    assert set(refs) == set(example["stringData"]), "secret.example.yaml lists exactly the keys the pods read"
    assert {key for key, ref in refs.items() if not ref.get("optional")} == REQUIRED_SECRETS
    kustomization = (K8S / "kustomization.yaml").read_text()
    assert "secret.example.yaml" not in re.sub(r"#.*", "", kustomization), "never rendered from the repository"


@pytest.mark.integration
def test_gateway_settings_are_known_and_valid(rendered: dict[tuple[str, str], Manifest]) -> None:
    deployment = by_kind(rendered, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    gateway = container(deployment["spec"]["template"], "gateway")
    settings = settings_map(rendered)
    assert not unknown_settings([*settings, *secret_refs(rendered)]), "settings the gateway does not know"

    # GATEWAY_CONFIG is a file of the mounted ConfigMap: the one kustomize generated from deploy/k8s/gateway.yaml.
    mounts = {mount["mountPath"]: mount["name"] for mount in gateway["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    directory, _, filename = settings["GATEWAY_CONFIG"].rpartition("/")
    config_map = rendered[("ConfigMap", volumes[mounts[directory]]["configMap"]["name"])]
    assert config_map["data"][filename] == (K8S / filename).read_text()

    secrets = {"DATABASE_URL": "postgresql://gateway:x@postgres:5432/gateway", "REDIS_URL": "redis://redis:6379/0"}
    config = load_settings({**settings, **secrets, "GATEWAY_CONFIG": str(K8S / filename)})
    assert config.models
    if config.settings.workers > 1:
        metrics_dir = config.settings.prometheus_multiproc_dir
        assert "emptyDir" in volumes[mounts[metrics_dir]], "PROMETHEUS_MULTIPROC_DIR on an emptyDir"
    writable = {path for path, name in mounts.items() if "emptyDir" in volumes[name]}
    assert "/tmp" in writable, "the read-only root leaves /tmp writable"


@pytest.mark.integration
def test_image_is_set_in_one_place(rendered: dict[tuple[str, str], Manifest]) -> None:
    (image,) = load_yaml(K8S / "kustomization.yaml")["images"]
    expected = f"{image['newName']}:{image['newTag']}"
    for kind in ("Deployment", "Job"):
        for item in by_kind(rendered, kind)["spec"]["template"]["spec"]["containers"]:
            assert item["image"] == expected
