"""deploy/docker, deploy/compose and deploy/k8s, checked offline.

No container runtime here (the `docker` client has no daemon and no compose plugin),
so the image is linted with hadolint, not built, and the compose file is validated
against the compose specification, not started. Kubernetes manifests are rendered with
`kubectl kustomize`, the core objects validated with kubernetes-validate --strict, and
the custom resources (KEDA, Prometheus operator) against their CRDs' vendored
openAPIV3Schema, with unknown fields refused (the API server would prune them silently).
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.conftest import prometheus_tool

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE = DEPLOY / "compose"
OVERLAYS = ["cpu", "gpu"]
BIN = Path(sys.executable).parent  # hadolint, check-jsonschema, kubernetes-validate (dev extra)

# The custom resources rnnq ships, and the vendored schema that validates each.
CRD_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "keda.sh_scaledobjects.yaml",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring.coreos.com_servicemonitors.yaml",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "monitoring.coreos.com_prometheusrules.yaml",
}
CORE = {
    ("v1", "Namespace"), ("v1", "ConfigMap"), ("v1", "Secret"), ("v1", "Service"),
    ("apps/v1", "Deployment"), ("apps/v1", "StatefulSet"), ("networking.k8s.io/v1", "NetworkPolicy"),
}


def _tool(name: str) -> str:
    path = shutil.which(name) or (str(BIN / name) if (BIN / name).exists() else None)
    if path is None:
        pytest.skip(f"{name} is not installed (pip install -e '.[dev]', or kubectl for kustomize)")
    return path


def _run(args: list[str], cwd: Path = ROOT) -> str:
    out = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, f"{' '.join(args)} failed:\n{out.stdout}\n{out.stderr}"
    return out.stdout


# --- Kubernetes ----------------------------------------------------------------------


_RENDERED: dict[str, list[dict[str, Any]]] = {}


def render(overlay: str) -> list[dict[str, Any]]:
    if overlay not in _RENDERED:
        text = _run([_tool("kubectl"), "kustomize", str(K8S / "overlays" / overlay)])
        _RENDERED[overlay] = [doc for doc in yaml.safe_load_all(text) if doc]
    return _RENDERED[overlay]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def named(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (doc,) = [doc for doc in by_kind(docs, kind) if doc["metadata"]["name"] == name]
    return doc


def test_generated_files_are_committed(tmp_path: Path) -> None:
    subprocess.run([sys.executable, K8S / "generate.py", "--out", tmp_path], check=True, capture_output=True)
    for path in [tmp_path / "prometheusrule.yaml", *sorted((tmp_path / "dashboards").iterdir())]:
        committed = K8S / "base" / path.relative_to(tmp_path)
        assert committed.read_text() == path.read_text(), f"{committed} is stale: run python deploy/k8s/generate.py"
    assert sorted(p.name for p in (K8S / "base" / "dashboards").iterdir()) == \
        sorted(p.name for p in (DEPLOY / "grafana" / "dashboards").glob("*.json"))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_is_a_known_kind_in_the_namespace(overlay: str) -> None:
    docs = render(overlay)
    kinds = {(doc["apiVersion"], doc["kind"]) for doc in docs}
    assert kinds <= CORE | set(CRD_SCHEMAS), kinds - CORE - set(CRD_SCHEMAS)
    assert kinds >= {("keda.sh/v1alpha1", "ScaledObject"), ("apps/v1", "StatefulSet")}
    for doc in docs:
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", doc["metadata"]["name"]), doc["metadata"]["name"]
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "rnnq", doc["metadata"]["name"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_core_objects_validate_strictly(overlay: str, tmp_path: Path) -> None:
    files = []
    for i, doc in enumerate(render(overlay)):
        if (doc["apiVersion"], doc["kind"]) in CORE:
            files.append(tmp_path / f"{i:02d}-{doc['kind']}.yaml")
            files[-1].write_text(yaml.safe_dump(doc))
    assert len(files) >= 10
    _run([_tool("kubernetes-validate"), "--strict", "--quiet", *map(str, files)])


def _strict(schema: Any) -> Any:
    """The schema with additionalProperties: false on every object that lists its
    properties and does not preserve unknown fields: a misspelt field fails here
    instead of being pruned by the API server."""
    if isinstance(schema, dict):
        out = {key: _strict(value) for key, value in schema.items()}
        if "properties" in schema and "additionalProperties" not in schema \
                and not schema.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    return schema


def crd_validator(api_version: str, kind: str) -> jsonschema.Draft4Validator:
    vendored = yaml.safe_load((K8S / "schemas" / CRD_SCHEMAS[(api_version, kind)]).read_text())
    assert f"{vendored['group']}/{vendored['version']}" == api_version and vendored["kind"] == kind
    return jsonschema.Draft4Validator(_strict(vendored["openAPIV3Schema"]))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_custom_resources_validate_against_their_crds(overlay: str) -> None:
    found = 0
    for doc in render(overlay):
        key = (doc["apiVersion"], doc["kind"])
        if key in CRD_SCHEMAS:
            errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in crd_validator(*key).iter_errors(doc)]
            assert not errors, f"{doc['kind']}/{doc['metadata']['name']}: {errors}"
            found += 1
    assert found == 4  # ScaledObject, two ServiceMonitors, PrometheusRule


@pytest.mark.parametrize("change", ["misspelt field", "missing target", "string replica count"])
def test_the_crd_check_catches_mistakes(change: str) -> None:
    scaled = copy.deepcopy(named(render("gpu"), "ScaledObject", "rnnq-worker"))
    if change == "misspelt field":
        scaled["spec"]["minReplicas"] = scaled["spec"].pop("minReplicaCount")
    elif change == "missing target":
        del scaled["spec"]["scaleTargetRef"]
    else:
        scaled["spec"]["maxReplicaCount"] = "16"
    assert list(crd_validator("keda.sh/v1alpha1", "ScaledObject").iter_errors(scaled))


def test_keda_scales_the_training_workers_on_jobs_not_list_length() -> None:
    docs = render("gpu")
    scaled = named(docs, "ScaledObject", "rnnq-worker")["spec"]
    target = scaled["scaleTargetRef"]
    named(docs, target["kind"], target["name"])  # the target exists
    assert target["name"] == "rnnq-worker" and scaled["minReplicaCount"] == 0
    (trigger,) = scaled["triggers"]
    # Not the redis scaler on the queue list: kombu's priority sub-lists and the unacked
    # hash make a busy fleet look idle.
    assert trigger["type"] == "prometheus"
    meta = trigger["metadata"]
    assert meta["activationThreshold"] == "0" and meta["threshold"] == "1"
    assert 'rnnq_jobs{queue="train", state=~"queued|running"}' in meta["query"]


def test_keda_query_parses(tmp_path: Path) -> None:
    query = named(render("gpu"), "ScaledObject", "rnnq-worker")["spec"]["triggers"][0]["metadata"]["query"]
    rules = {"groups": [{"name": "keda", "rules": [{"record": "rnnq:keda_demand", "expr": query}]}]}
    (tmp_path / "keda.yml").write_text(yaml.safe_dump(rules))
    _run([prometheus_tool("promtool"), "check", "rules", "keda.yml"], cwd=tmp_path)


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def test_gpu_workers_get_one_gpu_and_time_to_drain() -> None:
    gpu = named(render("gpu"), "Deployment", "rnnq-worker")
    cpu = named(render("cpu"), "Deployment", "rnnq-worker")
    container = _container(gpu)
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["args"][:3] == ["worker", "--gpus", "all"]
    assert "nvidia.com/gpu" not in _container(cpu)["resources"].get("limits", {})
    assert _container(cpu)["image"] == "rnnq:cpu" and container["image"] == "rnnq:gpu"
    for worker in (gpu, cpu):
        spec = worker["spec"]["template"]["spec"]
        # SIGTERM: stop at the next step, checkpoint to S3, hand the job back.
        assert spec["terminationGracePeriodSeconds"] >= 300
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert _container(worker)["readinessProbe"]["httpGet"]["port"] == "metrics"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_references_resolve(overlay: str) -> None:
    docs = render(overlay)
    names = {(doc["kind"], doc["metadata"]["name"]) for doc in docs}
    pods = [doc["spec"]["template"] for doc in docs if doc["kind"] in ("Deployment", "StatefulSet")]
    for pod in pods:
        for container in pod["spec"]["containers"]:
            for source in container.get("envFrom", []):
                for kind, field in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                    if field in source:
                        assert (kind, source[field]["name"]) in names
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ("Secret", ref["name"]) in names
            if any(env["name"] == "RNNQ_REDIS_URL" for env in container.get("env", [])):
                names_before = [env["name"] for env in container["env"]]
                # $(REDIS_PASSWORD) expands only if it is defined earlier in the list.
                assert names_before.index("REDIS_PASSWORD") < names_before.index("RNNQ_REDIS_URL")
    for service in by_kind(docs, "Service"):
        selector = service["spec"]["selector"]
        assert any(selector.items() <= pod["metadata"]["labels"].items() for pod in pods), service["metadata"]["name"]
    for monitor in by_kind(docs, "ServiceMonitor"):
        wanted = monitor["spec"]["selector"]["matchLabels"].items()
        assert any(wanted <= s["metadata"]["labels"].items() for s in by_kind(docs, "Service"))


def test_network_policies_fence_redis_and_metrics() -> None:
    docs = render("gpu")
    policies = {doc["metadata"]["name"]: doc["spec"] for doc in by_kind(docs, "NetworkPolicy")}
    assert policies["default-deny-ingress"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    (redis_rule,) = policies["redis-from-rnnq"]["ingress"]
    assert redis_rule["from"] == [{"podSelector": {"matchLabels": {"app.kubernetes.io/part-of": "rnnq"}}}]
    (metrics_rule,) = policies["metrics-from-prometheus"]["ingress"]
    assert {port["port"] for port in metrics_rule["ports"]} == {9808, 9809}
    assert all("namespaceSelector" in peer and "podSelector" in peer for peer in metrics_rule["from"])
    # Every pod that serves metrics carries the label the metrics policy selects on.
    for doc in by_kind(docs, "Deployment"):
        labels = doc["spec"]["template"]["metadata"]["labels"]
        assert labels.get("rnnq.io/metrics") == "true" and labels.get("app.kubernetes.io/part-of") == "rnnq"


def test_redis_tls_component(tmp_path: Path) -> None:
    # An overlay of the user's: the gpu overlay plus the TLS component (paths must be relative).
    k8s = Path(os.path.relpath(K8S, tmp_path))
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [str(k8s / "overlays" / "gpu")], "components": [str(k8s / "components" / "redis-tls")],
    }))
    docs = [doc for doc in yaml.safe_load_all(_run([_tool("kubectl"), "kustomize", str(tmp_path)])) if doc]
    redis_args = _container(named(docs, "StatefulSet", "redis"))["args"][0]
    assert "--port 0" in redis_args and "--tls-port 6379" in redis_args  # no plain-text port left
    clients = by_kind(docs, "Deployment")
    assert len(clients) == 3
    for doc in clients:
        container = _container(doc)
        (url,) = [env["value"] for env in container["env"] if env["name"] == "RNNQ_REDIS_URL"]
        assert url.startswith("rediss://") and "ssl_cert_reqs=required" in url, doc["metadata"]["name"]
        ca = re.search(r"ssl_ca_certs=(\S+)", url)
        assert ca is not None
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        assert ca.group(1).startswith(mounts["redis-ca"] + "/"), doc["metadata"]["name"]
        volumes = {v["name"]: v for v in doc["spec"]["template"]["spec"]["volumes"]}
        assert volumes["redis-ca"]["secret"]["secretName"] == "rnnq-redis-tls"


def test_alerts_reach_the_cluster_unchanged() -> None:
    rule = named(render("gpu"), "PrometheusRule", "rnnq")
    alerts = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    assert rule["spec"]["groups"] == alerts["groups"]


# --- compose -------------------------------------------------------------------------


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((COMPOSE / "compose.yaml").read_text())
    return loaded


def test_compose_matches_the_compose_specification() -> None:
    _run([_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE / "compose.yaml")])


def test_compose_references_only_what_it_defines() -> None:
    compose = _compose()
    services = compose["services"]
    assert {"redis", "minio", "worker-gpu", "worker-cpu", "exporter", "prometheus", "grafana"} <= services.keys()
    for name, service in services.items():
        deps = service.get("depends_on", {})
        assert set(deps) <= services.keys(), f"{name} depends on {set(deps) - services.keys()}"
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (COMPOSE / source).exists(), f"{name} mounts {source}, which is not in the repository"
            else:
                assert source in compose["volumes"], f"{name} uses undeclared volume {source}"
    # Every ${VAR} has a line in the example env file.
    example = (COMPOSE / "rnnq.env.example").read_text()
    defined = set(re.findall(r"^([A-Z0-9_]+)=", example, re.MULTILINE))
    used = set(re.findall(r"(?<!\$)\$\{([A-Z0-9_]+)", (COMPOSE / "compose.yaml").read_text()))
    assert used and used <= defined, used - defined


def test_compose_redis_keeps_jobs_and_asks_for_a_password() -> None:
    redis = _compose()["services"]["redis"]
    for flag in ("--appendonly yes", "--maxmemory-policy noeviction", "--requirepass"):
        assert flag in redis["command"]
    gpu = _compose()["services"]["worker-gpu"]
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["capabilities"] == ["gpu"] and "--gpus" in gpu["command"]


def test_compose_prometheus_config(tmp_path: Path) -> None:
    config = yaml.safe_load((COMPOSE / "prometheus.yml").read_text())
    assert [job["job_name"] for job in config["scrape_configs"]] == ["rnnq-workers", "rnnq-exporter"]
    hosts = {target.split(":")[0] for job in config["scrape_configs"] for sc in job["static_configs"]
             for target in sc["targets"]}
    assert hosts <= _compose()["services"].keys()
    shutil.copy(COMPOSE / "prometheus.yml", tmp_path / "prometheus.yml")
    shutil.copy(DEPLOY / "prometheus" / "alerts.yml", tmp_path / "alerts.yml")
    _run([prometheus_tool("promtool"), "check", "config", "prometheus.yml"], cwd=tmp_path)


# --- the image -----------------------------------------------------------------------


def test_dockerfile_lints_clean_and_runs_as_non_root() -> None:
    dockerfile = DEPLOY / "docker" / "Dockerfile"
    _run([_tool("hadolint"), str(dockerfile)])
    text = dockerfile.read_text()
    users = re.findall(r"^USER (\S+)", text, re.MULTILINE)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert "-c requirements.lock" in text  # torch and everything else at the lock's versions
