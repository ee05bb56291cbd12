"""deploy/: the Dockerfile, the Compose setup and the Kubernetes manifests.

There is no Docker engine and no cluster here, so these tests check what can be checked
without them: every file parses; every INTENTWATCH_* variable and settings-file key they use
is a real setting and their values pass the real loader; every path setting points at
something the container mounts; the commands are real `intentwatch` subcommands; the
Prometheus configuration passes promtool; and the probe paths and port are served by a real
worker (on a non-loopback address, as a kubelet or another container reaches it).
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path, PurePosixPath

import orjson
import pytest
import yaml

from monitor.config import CONFIG_ENV, SETTINGS, env_name, load_settings
from streams import local
from streams.cli import build_parser

ROOT = local.ROOT
COMPOSE_DIR = ROOT / "deploy" / "compose"
K8S_DIR = ROOT / "deploy" / "k8s"
# The path settings each command reads.
PATH_SETTINGS = {"worker": ("catalog", "signing_key", "data_dir"),
                 "gateway": ("catalog", "verify_keys")}
KNOWN_VARIABLES = {env_name(name) for name in SETTINGS} | {CONFIG_ENV}


def load_yaml(path: Path) -> list:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def compose() -> dict:
    return load_yaml(COMPOSE_DIR / "compose.yaml")[0]


def k8s(kind: str) -> list[dict]:
    return [doc for path in sorted(K8S_DIR.glob("*.yaml")) for doc in load_yaml(path)
            if doc.get("kind") == kind]


def dockerfile() -> dict:
    """ENTRYPOINT, CMD (exec form) and ENV of the Dockerfile."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    out: dict = {"ENV": {}}
    for line in text.splitlines():
        word, _, rest = line.strip().partition(" ")
        if word in ("ENTRYPOINT", "CMD"):
            out[word] = json.loads(rest)
        elif word == "ENV":
            out["ENV"].update(dict(re.findall(r"(\w+)=(\S+)", rest)))
    return out


def assert_known_variables(env: dict, where: str) -> None:
    unknown = {k for k in env if k.startswith("INTENTWATCH_")} - KNOWN_VARIABLES
    assert not unknown, f"{where}: not settings: {sorted(unknown)}"


def assert_paths_mounted(settings, command: str, mounts: list[str], where: str) -> None:
    """Each path setting the command reads lies under one of the container's mount points."""
    for name in PATH_SETTINGS[command]:
        for path in filter(None, (p.strip() for p in getattr(settings, name).split(","))):
            assert any(PurePosixPath(path).is_relative_to(m) for m in mounts), \
                f"{where}: {name} = {path} is not in any mount ({mounts})"


def test_every_deploy_file_parses():
    files = sorted((ROOT / "deploy").glob("*/*.y*ml"))
    assert {f.parent.name for f in files} >= {"compose", "k8s"}
    for path in files:
        assert load_yaml(path), path
    for path in list(COMPOSE_DIR.glob("*.toml")) + list(K8S_DIR.glob("*.toml")):
        tomllib.loads(path.read_text())


def test_grafana_panels_have_distinct_ids_and_do_not_overlap():
    panels = json.loads((ROOT / "deploy" / "grafana" / "intentwatch.json").read_text())["panels"]
    ids = [p["id"] for p in panels]
    assert len(set(ids)) == len(ids), sorted(i for i in ids if ids.count(i) > 1)
    taken: dict[tuple[int, int], str] = {}
    for panel in panels:
        g = panel["gridPos"]
        assert g["x"] + g["w"] <= 24, panel["title"]
        for cell in ((x, y) for x in range(g["x"], g["x"] + g["w"])
                     for y in range(g["y"], g["y"] + g["h"])):
            assert cell not in taken, f"{panel['title']} overlaps {taken[cell]}"
            taken[cell] = panel["title"]


# -- the image -------------------------------------------------------------------------------
def test_dockerfile_runs_a_real_subcommand_with_valid_settings():
    image = dockerfile()
    assert image["ENTRYPOINT"] == ["intentwatch"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["intentwatch"] == "streams.cli:main"
    args = build_parser().parse_args(image["CMD"])
    assert args.command == "worker"
    assert_known_variables(image["ENV"], "Dockerfile")
    load_settings(None, image["ENV"])


# -- Compose ---------------------------------------------------------------------------------
def interpolate(value: str) -> str:
    """Compose's ${VAR}, ${VAR:?message} and ${VAR:-default}: a required variable gets a
    sample value, as the user's .env would give it."""
    def one(match):
        name, op, arg = match.group(1), match.group(2) or "", match.group(3) or ""
        return arg if op == ":-" else f"sample-{name.lower()}"
    return re.sub(r"\$\{(\w+)(:[?-])?([^}]*)\}", one, str(value))


def intentwatch_services() -> dict:
    return {name: svc for name, svc in compose()["services"].items()
            if svc.get("image") == "intentwatch:local"}


def bind_mounts(service: dict) -> list[tuple[str, str]]:
    """(source as written, target) of the service's bind mounts (sources start with .)."""
    out = []
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            out.append((source, target))
    return out


def container_settings(service: dict):
    """The settings the service's container runs with: the image's environment, then the
    service's, with the mounted settings file read from its source in this repository."""
    env = dict(dockerfile()["ENV"])
    env.update({k: interpolate(v) for k, v in service.get("environment", {}).items()})
    mounts = {target: source for source, target in bind_mounts(service)}
    config = env.pop(CONFIG_ENV, None)
    path = str(COMPOSE_DIR / mounts[config]) if config else None
    return load_settings(path, env)[0]


def test_compose_services_use_real_settings_with_valid_values():
    services = intentwatch_services()
    assert set(services) == {"worker", "gateway"}
    secrets = set(compose()["secrets"])
    for name, service in services.items():
        assert_known_variables(service["environment"], f"compose {name}")
        settings = container_settings(service)
        assert CONFIG_ENV in service["environment"], f"{name} reads no settings file"
        mounts = [t for _, t in bind_mounts(service)] + \
            [v.split(":")[1] for v in service.get("volumes", []) if not v.startswith(".")] + \
            [f"/run/secrets/{s}" for s in service.get("secrets", [])]
        assert_paths_mounted(settings, service["command"][0], mounts, f"compose {name}")
        assert set(service.get("secrets", [])) <= secrets
        assert settings.web_bind == "0.0.0.0", f"{name} would not be reachable"
    worker = container_settings(services["worker"])
    assert worker.web_host == "worker" and worker.signing_key  # reachable and signing
    assert worker.bootstrap == "kafka:9092"
    listeners = compose()["services"]["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert "//kafka:9092" in listeners
    assert f"{worker.web_port}:{worker.web_port}" in services["worker"]["ports"]


def test_compose_commands_are_real_subcommands():
    parser = build_parser()
    worker = container_settings(intentwatch_services()["worker"])
    for name, service in intentwatch_services().items():
        args = parser.parse_args(service["command"])
        assert args.command == name
    gateway = parser.parse_args(intentwatch_services()["gateway"]["command"])
    assert gateway.decide_url == f"http://worker:{worker.web_port}/v1/decide"
    healthcheck = " ".join(intentwatch_services()["worker"]["healthcheck"]["test"])
    assert f"127.0.0.1:{worker.web_port}/readyz" in healthcheck


def test_compose_mounts_exist_in_the_repository():
    for name, service in compose()["services"].items():
        for source, _ in bind_mounts(service):
            assert (COMPOSE_DIR / source).exists(), f"compose {name}: {source} missing"
    for secret in compose()["secrets"].values():  # made by the user, never committed
        assert secret["file"].startswith("./secrets/")
    assert "/deploy/compose/secrets/" in (ROOT / ".gitignore").read_text()


def test_compose_prometheus_config_passes_promtool(tmp_path):
    promtool = shutil.which("promtool")
    assert promtool, "promtool not found (Debian package prometheus)"
    prometheus = compose()["services"]["prometheus"]
    # Lay the container's mounted files out as Prometheus sees them, then check them all.
    for source, target in bind_mounts(prometheus):
        dest = tmp_path / target.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(COMPOSE_DIR / source, dest)
    config = tmp_path / "etc" / "prometheus" / "prometheus.yml"
    out = subprocess.run([promtool, "check", "config", str(config)], check=False,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    worker = container_settings(intentwatch_services()["worker"])
    scrape = yaml.safe_load(config.read_text())["scrape_configs"]
    targets = [t for job in scrape for sc in job["static_configs"] for t in sc["targets"]]
    assert targets == [f"worker:{worker.web_port}"]
    # The alert rules find workers by job name: a renamed job silently disables WorkerDown.
    rules = (ROOT / "deploy" / "prometheus" / "rules.yml").read_text()
    selected = set(re.findall(r'up\{job="([^"]+)"\}', rules))
    assert selected and selected <= {job["job_name"] for job in scrape}


# -- Kubernetes ------------------------------------------------------------------------------
def statefulset() -> dict:
    (sts,) = k8s("StatefulSet")
    return sts


def worker_container() -> dict:
    (container,) = statefulset()["spec"]["template"]["spec"]["containers"]
    return container


def k8s_env(container: dict) -> dict:
    """The container's environment as the kubelet makes it: fieldRefs and secretKeyRefs get
    sample values, $(VAR) refers to variables defined before."""
    env: dict = {}
    for var in container["env"]:
        if "value" in var:
            env[var["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], var["value"])
        else:
            source = var["valueFrom"]
            sample = {"metadata.name": "intentwatch-worker-0", "metadata.namespace": "ops"}
            env[var["name"]] = sample[source["fieldRef"]["fieldPath"]] if "fieldRef" in \
                source else f"sample-{source['secretKeyRef']['key']}"
    return env


def k8s_settings():
    (generator,) = yaml.safe_load(
        (K8S_DIR / "kustomization.yaml").read_text())["configMapGenerator"]
    assert generator["name"] == "intentwatch-config" and generator["files"] == ["intentwatch.toml"]
    env = dict(dockerfile()["ENV"])
    env.update(k8s_env(worker_container()))
    config = PurePosixPath(env.pop(CONFIG_ENV))
    mounts = {m["name"]: m["mountPath"] for m in worker_container()["volumeMounts"]}
    assert config.parent == PurePosixPath(mounts["config"])  # the ConfigMap's mount
    return load_settings(str(K8S_DIR / config.name), env)[0]


def test_kustomization_lists_existing_files():
    kustomization = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())
    for name in kustomization["resources"] + kustomization["configMapGenerator"][0]["files"]:
        assert (K8S_DIR / name).exists(), name
    assert {d["kind"] for n in kustomization["resources"] for d in load_yaml(K8S_DIR / n)} == \
        {"StatefulSet", "Service", "PodDisruptionBudget"}
    images = {i["name"] for i in kustomization["images"]}
    assert worker_container()["image"] in images


def test_k8s_worker_uses_real_settings_with_valid_values():
    container = worker_container()
    assert_known_variables({v["name"]: "" for v in container["env"]}, "statefulset")
    settings = k8s_settings()
    assert settings.web_host == "intentwatch-worker-0.intentwatch-worker.ops.svc"
    assert settings.web_bind == "0.0.0.0"
    assert settings.replication >= 1 and statefulset()["spec"]["replicas"] <= settings.partitions
    mounts = [m["mountPath"] for m in container["volumeMounts"]]
    assert_paths_mounted(settings, container["args"][0], mounts, "statefulset")
    (port,) = container["ports"]
    assert port == {"name": "web", "containerPort": settings.web_port}


def test_k8s_secret_template_holds_placeholders_for_every_key_used():
    (template,) = k8s("Secret")
    values = template["stringData"]
    assert all(v.startswith("<") and v.endswith(">") for v in values.values()), values
    spec = statefulset()["spec"]["template"]["spec"]
    used = {v["valueFrom"]["secretKeyRef"]["key"] for v in worker_container()["env"]
            if "secretKeyRef" in v.get("valueFrom", {})}
    used |= {item["key"] for vol in spec["volumes"] if "secret" in vol
             for item in vol["secret"]["items"]}
    assert used == set(values)
    names = {vol["secret"]["secretName"] for vol in spec["volumes"] if "secret" in vol}
    assert names == {template["metadata"]["name"]}
    kustomization = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())
    assert "secret.template.yaml" not in kustomization["resources"]  # never applied as is


def test_k8s_services_and_budget_select_the_workers():
    sts = statefulset()
    labels = sts["spec"]["template"]["metadata"]["labels"]
    assert sts["spec"]["selector"]["matchLabels"].items() <= labels.items()
    services = {s["metadata"]["name"]: s for s in k8s("Service")}
    headless = services[sts["spec"]["serviceName"]]
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is True
    settings = k8s_settings()
    for service in services.values():
        assert service["spec"]["selector"].items() <= labels.items()
        assert service["spec"]["ports"] == [{"name": "web", "port": settings.web_port,
                                             "targetPort": "web"}]
    assert headless["metadata"]["annotations"]["prometheus.io/port"] == str(settings.web_port)
    (budget,) = k8s("PodDisruptionBudget")
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    data_mount = next(m for m in worker_container()["volumeMounts"]
                      if m["name"] == claim["metadata"]["name"])
    assert data_mount["mountPath"] == settings.data_dir


def probe_paths() -> dict[str, str]:
    """Probe name -> path, from the StatefulSet (all on the port named web)."""
    paths = {}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        get = worker_container()[probe]["httpGet"]
        assert get["port"] == "web"
        paths[probe] = get["path"]
    return paths


def test_probes_are_health_then_readiness():
    assert probe_paths() == {"startupProbe": "/healthz", "livenessProbe": "/healthz",
                             "readinessProbe": "/readyz"}


# -- the paths served, on a real worker --------------------------------------------------------
def outside_address() -> str:
    """This machine's address on its network (not loopback), as a peer would reach it."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("192.0.2.1", 9))  # UDP: no packet is sent, only a route is chosen
        address = s.getsockname()[0]
    if address.startswith("127."):
        pytest.fail("no non-loopback IPv4 address to test web_bind with")
    return address


def get(host: str, port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_ready(host: str, port: int, timeout: float = 90.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status, body = get(host, port, "/readyz")
        if status == 200:
            return orjson.loads(body)
        assert status == 503, (status, body)
        assert "reason" in orjson.loads(body)
        assert time.monotonic() < deadline, f"not ready within {timeout:.0f} s: {body!r}"
        time.sleep(0.3)


@pytest.mark.kafka
def test_manifest_probes_and_metrics_are_served_on_the_bound_interface(start_worker):
    host = outside_address()
    worker = start_worker(web_bind="0.0.0.0", web_host=host)
    assert wait_ready(host, worker.web_port)["status"] == "ready"
    for probe, path in probe_paths().items():
        status, _ = get(host, worker.web_port, path)
        assert status == 200, (probe, path, status)
    scrape = yaml.safe_load((COMPOSE_DIR / "prometheus.yml").read_text())["scrape_configs"]
    status, body = get(host, worker.web_port, scrape[0]["metrics_path"])
    assert status == 200 and b"intentwatch_events_total" in body


@pytest.mark.kafka
def test_default_bind_is_loopback_only(start_worker):
    host = outside_address()
    worker = start_worker()
    assert get("127.0.0.1", worker.web_port, "/healthz")[0] == 200
    with pytest.raises(urllib.error.URLError):
        get(host, worker.web_port, "/healthz")


@pytest.mark.kafka
def test_workers_advertise_web_host_and_are_ready_after_joining(start_worker, tmp_path):
    host = outside_address()
    prefix = f"ready-{tmp_path.name[-12:]}"
    first = start_worker(prefix, web_bind="0.0.0.0", web_host=host)
    wait_ready(host, first.web_port)
    second = start_worker(prefix, web_bind="0.0.0.0", web_host=host,
                          data_dir=tmp_path / "data-second")
    urls = {f"http://{host}:{w.web_port}" for w in (first, second)}
    deadline = time.monotonic() + 90
    while True:  # both ready, and each names both by their advertised URLs as table owners
        ready = [get(host, w.web_port, "/readyz")[0] for w in (first, second)]
        routes = [set(orjson.loads(get(host, w.web_port, "/router/tasks/")[1]))
                  for w in (first, second)]
        if ready == [200, 200] and routes == [urls, urls]:
            break
        assert time.monotonic() < deadline, f"ready {ready}, routes {routes}"
        time.sleep(0.5)
