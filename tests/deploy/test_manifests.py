"""The deployment files are valid and say what the code does.

Kubernetes manifests (`kubectl kustomize k8s/overlays/{cpu,gpu,ha}`) are validated against the
Kubernetes schemas of kubernetes-validate (strict: unknown fields fail) and, for the KEDA and
Prometheus Operator resources, against models generated from those projects' CRDs (cloudcoil); all
from PyPI packages, nothing fetched. Then every name a deployment file shares with the code is
checked against the code: LUMOS_* variables, ports, probe paths, Redis streams, metric names.
"""

import copy
import json
import re
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from cloudcoil.models.keda.v1alpha1 import ScaledObject, TriggerAuthentication
from cloudcoil.models.prometheus_operator.v1 import PrometheusRule, ServiceMonitor
from prometheus_client.metrics import MetricWrapperBase
from pydantic import BaseModel, SecretStr

from service import metrics
from service.api.routers import health
from service.queue.base import LANES
from service.queue.redis import GROUP, lane_key
from service.settings import Settings
from tests.deploy.conftest import ROOT, compose

KUBERNETES = "1.32"
CRDS: dict[str, type[BaseModel]] = {
    "ScaledObject": ScaledObject,
    "TriggerAuthentication": TriggerAuthentication,
    "ServiceMonitor": ServiceMonitor,
    "PrometheusRule": PrometheusRule,
}
SETTINGS = {f"LUMOS_{name.upper()}" for name in Settings.model_fields}
# Variables docker-compose.yml interpolates itself; the processes never read them.
COMPOSE_ONLY = {
    "LUMOS_PUBLISH_API",
    "LUMOS_PUBLISH_PROMETHEUS",
    "LUMOS_PUBLISH_GRAFANA",
    "LUMOS_DEMO_API",
    "LUMOS_DEMO_CAMERA",
}


def kustomize(overlay: str) -> list[dict]:
    rendered = subprocess.run(
        ["kubectl", "kustomize", str(ROOT / "k8s" / "overlays" / overlay)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [doc for doc in yaml.safe_load_all(rendered) if doc]


def validate(resource: dict) -> None:
    """Raise unless `resource` matches its schema exactly (no unknown or misspelt field)."""
    model = CRDS.get(resource["kind"])
    if model is None:
        kubernetes_validate.validate(resource, KUBERNETES, strict=True)
        return
    parsed = model.model_validate(resource).model_dump(by_alias=True, exclude_none=True)
    if json.loads(json.dumps(parsed)) != resource:
        raise ValueError(f"{resource['kind']} has fields its CRD does not know: {resource}")


def of_kind(resources: list[dict], kind: str) -> dict[str, dict]:
    return {r["metadata"]["name"]: r for r in resources if r["kind"] == kind}


def pod_spec(resource: dict) -> dict:
    return resource["spec"]["template"]["spec"]


def metric_samples() -> set[str]:
    """Every sample name service/metrics.py exposes (counters' _total, histograms' _bucket...)."""
    names = set()
    for metric in vars(metrics).values():
        if isinstance(metric, MetricWrapperBase):
            base = metric._name
            suffixes = ("", "_total", "_created", "_bucket", "_sum", "_count", "_info")
            names |= {base + suffix for suffix in suffixes}
    return names


@pytest.fixture(scope="module", params=["cpu", "gpu", "ha"])
def overlay(request: pytest.FixtureRequest) -> tuple[str, list[dict]]:
    return request.param, kustomize(request.param)


def test_kubernetes_manifests_validate_against_their_schemas(overlay):
    name, resources = overlay
    for resource in resources:
        validate(resource)
    kinds = {(r["kind"], r["metadata"]["name"]) for r in resources}
    for expected in [
        ("Namespace", "lumos"),
        ("StatefulSet", "redis"),
        ("Deployment", "api"),
        ("Deployment", "ingest"),
        ("Deployment", "infer"),
        ("Job", "trainer"),
        ("HorizontalPodAutoscaler", "api"),
        ("ScaledObject", "infer"),
        ("ServiceMonitor", "lumos"),
        *[("PodDisruptionBudget", role) for role in ("api", "ingest", "infer")],
    ]:
        assert expected in kinds, f"{name} overlay lacks {expected}"
    assert all(r["metadata"].get("namespace") in (None, "lumos") for r in resources)


def test_validation_rejects_what_the_schemas_forbid(overlay):
    _, resources = overlay
    deployment = copy.deepcopy(of_kind(resources, "Deployment")["api"])
    pod_spec(deployment)["containers"][0]["readinessprobe"] = {}  # misspelt
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(deployment)
    scaled = copy.deepcopy(of_kind(resources, "ScaledObject")["infer"])
    scaled["spec"]["maxReplicas"] = 8  # the field is maxReplicaCount
    with pytest.raises(ValueError, match="ScaledObject"):
        validate(scaled)
    monitor = copy.deepcopy(of_kind(resources, "ServiceMonitor")["lumos"])
    monitor["spec"]["endpoints"][0]["interval"] = 15  # a duration string, not a number
    with pytest.raises(ValueError):
        validate(monitor)


def test_gpu_overlay_puts_inference_and_training_on_gpus():
    resources = kustomize("gpu")
    gpu_pods = [of_kind(resources, "Deployment")["infer"], of_kind(resources, "Job")["trainer"]]
    for resource in gpu_pods:
        spec = pod_spec(resource)
        container = spec["containers"][0]
        assert container["image"] == "lumos:cuda"
        assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
        assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    for name in ("api", "ingest"):
        assert pod_spec(of_kind(resources, "Deployment")[name])["containers"][0]["image"] == (
            "lumos:cpu"
        )
    cpu = kustomize("cpu")
    assert not any("nvidia.com/gpu" in json.dumps(r) for r in cpu)


def test_kubernetes_manifests_agree_with_the_code(overlay):
    _, resources = overlay
    config = next(iter(of_kind(resources, "ConfigMap").values()))["data"]
    secret = of_kind(resources, "Secret")["lumos-secrets"]["stringData"]
    names = set(config) | set(secret)
    for resource in resources:
        if resource["kind"] in ("Deployment", "Job"):
            names |= {e["name"] for c in pod_spec(resource)["containers"] for e in c.get("env", [])}
    assert names <= SETTINGS, f"not settings of service/settings.py: {names - SETTINGS}"
    settings = Settings(**{k.removeprefix("LUMOS_").lower(): v for k, v in config.items()})
    assert settings.redis_url == "redis://redis:6379/0"

    routes = {route.path for route in health.router.routes}
    ports = {"http": settings.port, "metrics": settings.metrics_port}
    workloads = {**of_kind(resources, "Deployment"), **of_kind(resources, "Job")}
    for name, resource in workloads.items():
        (container,) = pod_spec(resource)["containers"]
        assert container["args"] == [name]
        for port in container.get("ports", []):
            assert port["containerPort"] == ports[port["name"]], (name, port)
        probes = {k: v for k, v in container.items() if k.endswith("Probe")}
        for kind, probe in probes.items():
            assert probe["httpGet"]["path"] in routes, (name, kind)
            assert probe["httpGet"]["port"] in ports, (name, kind)
        if "readinessProbe" in probes:
            assert probes["readinessProbe"]["httpGet"]["path"] == "/readyz"
            assert probes["livenessProbe"]["httpGet"]["path"] == "/healthz"
    uid = re.search(r"--uid (\d+)", (ROOT / "docker" / "install.sh").read_text())[1]
    for resource in workloads.values():
        assert pod_spec(resource)["securityContext"]["runAsUser"] == int(uid)

    services = of_kind(resources, "Service")
    scraped = {
        endpoint["port"]
        for endpoint in of_kind(resources, "ServiceMonitor")["lumos"]["spec"]["endpoints"]
    }
    for role in ("api", "ingest", "infer"):
        assert {p["name"] for p in services[role]["spec"]["ports"]} & scraped, role

    triggers = of_kind(resources, "ScaledObject")["infer"]["spec"]["triggers"]
    assert sorted(t["metadata"]["stream"] for t in triggers) == sorted(map(lane_key, LANES))
    assert {t["metadata"]["consumerGroup"] for t in triggers} == {GROUP}
    # Redis requires its password; KEDA takes it from the Secret the pods read it from.
    assert "LUMOS_REDIS_PASSWORD" in secret
    auth = of_kind(resources, "TriggerAuthentication")["redis-auth"]["spec"]["secretTargetRef"]
    assert auth == [
        {"parameter": "password", "name": "lumos-secrets", "key": "LUMOS_REDIS_PASSWORD"}
    ]
    assert all(t["authenticationRef"]["name"] == "redis-auth" for t in triggers)

    rules = of_kind(resources, "PrometheusRule")["lumos"]["spec"]["groups"][0]["rules"]
    used = {name for rule in rules for name in re.findall(r"\blumos_\w+", rule["expr"])}
    assert used and used <= metric_samples(), used - metric_samples()


def env_example() -> tuple[dict[str, str], dict[str, str]]:
    """.env.example's set variables and its commented-out defaults, by name."""
    active, defaults = {}, {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if match := re.fullmatch(r"(# )?(LUMOS_\w+)=(.*)", line):
            (defaults if match[1] else active)[match[2]] = match[3]
    return active, defaults


def test_env_example_lists_every_setting_with_its_default():
    active, defaults = env_example()
    listed = set(active) | set(defaults)
    assert SETTINGS - listed == set(), "add these settings to .env.example"
    assert listed - SETTINGS - COMPOSE_ONLY == set(), "not settings of service/settings.py"
    Settings(**{k.removeprefix("LUMOS_").lower(): v for k, v in active.items()})
    for name, text in defaults.items():
        if name in COMPOSE_ONLY or name in (
            "LUMOS_WORKER_ID",
            "LUMOS_CACHE_DIR",
        ):  # per process/user
            continue
        field = name.removeprefix("LUMOS_").lower()
        built_in = plain(getattr(Settings(), field))
        if text == "":
            assert built_in in (None, ""), name
        else:
            assert plain(getattr(Settings(**{field: text}), field)) == built_in, name


def plain(value: object) -> object:
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def compose_config(*args: str) -> dict:
    return json.loads(compose("lumos", [], *args, "config", "--format", "json"))


def test_compose_file_is_accepted_with_and_without_the_gpu_profile(docker_engine):
    default = compose_config()
    assert "infer-gpu" not in default["services"]
    assert default["services"]["ingest"]["deploy"]["replicas"] == 2
    gpu = compose_config("--profile", "gpu")
    infer_gpu = gpu["services"]["infer-gpu"]
    assert infer_gpu["image"] == "lumos:cuda"
    assert infer_gpu["build"]["target"] == "cuda"
    (device,) = infer_gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    assert infer_gpu["command"] == ["infer"]


def test_compose_file_agrees_with_the_code(docker_engine):
    services = compose_config()["services"]
    active, _ = env_example()
    settings = Settings(**{k.removeprefix("LUMOS_").lower(): v for k, v in active.items()})
    for name in ("api", "ingest", "infer", "trainer"):
        environment = services[name]["environment"]
        assert set(environment) <= SETTINGS | COMPOSE_ONLY, name
        assert environment["LUMOS_REDIS_URL"] == "redis://redis:6379/0"
        assert services[name]["command"] == [name]
    assert services["api"]["ports"][0]["target"] == settings.port
    for service in ("redis", "api", "ingest", "infer", "trainer", "prometheus", "grafana"):
        assert service in services
    for service in ("redis", "prometheus", "grafana"):
        assert re.fullmatch(r"[\w./-]+:v?\d+\.\d+\.\d+[\w.-]*", services[service]["image"])
    assert {v["source"] for v in services["redis"]["volumes"]} == {"redis"}
    assert "--appendonly" in services["redis"]["command"]

    prometheus = yaml.safe_load((ROOT / "docker" / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job["dns_sd_configs"][0] for job in prometheus["scrape_configs"]}
    assert jobs["api"]["port"] == settings.port
    for role in ("ingest", "infer", "trainer"):
        assert jobs[role]["port"] == settings.metrics_port
        assert role in jobs[role]["names"]


def test_grafana_provisioning_matches_compose_and_the_metrics(docker_engine):
    grafana = compose_config()["services"]["grafana"]
    mounts = {
        Path(v["source"]).relative_to(ROOT).as_posix(): v["target"] for v in grafana["volumes"]
    }
    provisioning = ROOT / "docker" / "grafana" / "provisioning"
    datasource = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text())
    (source,) = datasource["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"  # the compose service and its listen port
    provider = yaml.safe_load((provisioning / "dashboards" / "lumos.yaml").read_text())
    assert provider["providers"][0]["options"]["path"] == mounts["docker/grafana/dashboards"]
    assert mounts["docker/grafana/provisioning"] == "/etc/grafana/provisioning"

    dashboard = (ROOT / "docker" / "grafana" / "dashboards" / "lumos.json").read_text()
    used = set(re.findall(r"\blumos_\w+", dashboard))
    assert used and used <= metric_samples(), used - metric_samples()
    uids = set(re.findall(r'"uid":\s*"([^"$]+)"', dashboard)) - {json.loads(dashboard)["uid"]}
    assert uids <= {source["uid"]}, "panels must query the provisioned datasource"


def test_ha_overlay_reaches_redis_through_sentinel_and_spreads_every_replica():
    resources = kustomize("ha")
    config = next(iter(of_kind(resources, "ConfigMap").values()))["data"]
    settings = Settings(**{k.removeprefix("LUMOS_").lower(): v for k, v in config.items()})
    assert settings.redis_enabled() and settings.redis_wait_replicas >= 1
    redis = of_kind(resources, "StatefulSet")["redis"]
    assert redis["spec"]["replicas"] == 3
    pods = {settings.sentinel_addresses()[i][0] for i in range(3)}
    assert pods == {f"redis-{i}.redis" for i in range(3)}
    containers = {c["name"] for c in pod_spec(redis)["containers"]}
    assert containers == {"redis", "sentinel"}
    monitored = pod_spec(redis)["containers"][1]["args"][0]
    assert f"sentinel monitor {settings.redis_master_name} " in monitored
    spread = pod_spec(redis)["affinity"]["podAntiAffinity"]
    assert spread["requiredDuringSchedulingIgnoredDuringExecution"][0]["topologyKey"] == (
        "kubernetes.io/hostname"
    )
    for name, deployment in of_kind(resources, "Deployment").items():
        terms = pod_spec(deployment)["affinity"]["podAntiAffinity"]
        (term,) = terms["preferredDuringSchedulingIgnoredDuringExecution"]
        assert term["podAffinityTerm"]["labelSelector"]["matchLabels"] == {
            "app.kubernetes.io/name": name
        }
    # KEDA asks the same Sentinels for the primary and reads the same lag (XINFO GROUPS).
    triggers = of_kind(resources, "ScaledObject")["infer"]["spec"]["triggers"]
    assert {t["type"] for t in triggers} == {"redis-sentinel-streams"}
    for trigger in triggers:
        meta = trigger["metadata"]
        assert meta["sentinelMaster"] == settings.redis_master_name
        hosts = {a.split(".")[0] + ".redis" for a in meta["addresses"].split(",")}
        assert hosts == pods
        assert "lagCount" in meta
