"""deploy/kubernetes: schema validation, cross-references between objects and the config inside.

Core objects are validated offline against the Kubernetes JSON schemas that kubernetes-validate
ships (strict: unknown fields are errors). ServiceMonitor and PrometheusRule are CRDs it does
not know, so they are checked structurally against the objects they select. The ConfigMaps are
built from kustomization.yaml's configMapGenerator the way kustomize builds them.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from kubernetes_validate.utils import all_versions  # type: ignore[import-untyped]
from packaging.version import Version

from watcher.rules import load_rules

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "kubernetes"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"
LISTEN_PORT = 9783
# The oldest Kubernetes minor version the manifests are checked against; up to the newest shipped.
OLDEST_VERSION = Version("1.29")
SCHEMA_VERSIONS = [v for v in all_versions() if Version(v) >= OLDEST_VERSION]
NEWEST_VERSION = max(SCHEMA_VERSIONS, key=Version)
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}

Manifest = dict[str, Any]


def kustomization() -> Manifest:
    document: Manifest = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return document


def listed_resources() -> list[Manifest]:
    """Every object of the files kustomization.yaml lists under resources."""
    return [
        document
        for name in kustomization()["resources"]
        for document in yaml.safe_load_all((K8S / name).read_text())
        if document is not None
    ]


def generated_configmaps() -> list[Manifest]:
    """The configMapGenerator's ConfigMaps: one key per file, named after it (kustomize also
    adds a content hash to each name and rewrites the references to it)."""
    maps = []
    for generator in kustomization()["configMapGenerator"]:
        data = {PurePosixPath(path).name: (K8S / path).read_text() for path in generator["files"]}
        maps.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": generator["name"]},
                "data": data,
            }
        )
    return maps


def all_objects() -> list[Manifest]:
    return listed_resources() + generated_configmaps()


def one(kind: str) -> Manifest:
    (found,) = [o for o in all_objects() if o["kind"] == kind]
    return found


def pod_spec() -> Manifest:
    spec: Manifest = one("Deployment")["spec"]["template"]["spec"]
    return spec


def container() -> Manifest:
    (only,) = pod_spec()["containers"]
    result: Manifest = only
    return result


def mount_path(volume_name: str) -> str:
    (path,) = [m["mountPath"] for m in container()["volumeMounts"] if m["name"] == volume_name]
    return str(path)


def configmap_data(name: str) -> dict[str, str]:
    (found,) = [cm for cm in generated_configmaps() if cm["metadata"]["name"] == name]
    data: dict[str, str] = found["data"]
    return data


def watcher_config() -> Manifest:
    config: Manifest = yaml.safe_load(configmap_data("breakglass-watcher-config")["config.yaml"])
    return config


def _label(o: Manifest) -> str:
    return f"{o['kind']}/{o['metadata']['name']}"


@pytest.mark.parametrize(
    "version",
    # The newest schema stays in the fast subset; the older ones are many and slow.
    [
        pytest.param(v, marks=() if v == NEWEST_VERSION else pytest.mark.slow)
        for v in SCHEMA_VERSIONS
    ],
)
@pytest.mark.parametrize(
    "manifest",
    [o for o in all_objects() if o["kind"] not in CRD_KINDS],
    ids=_label,
)
def test_core_objects_match_the_kubernetes_schema(manifest: Manifest, version: str) -> None:
    kubernetes_validate.validate(manifest, version, strict=True)


def test_strict_validation_rejects_a_misspelt_field() -> None:
    """Guards the test above: a typo in a security field must not pass as valid."""
    deployment = yaml.safe_load((K8S / "deployment.yaml").read_text())
    security = deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]
    security["readOnlyRootFileSystem"] = security.pop("readOnlyRootFilesystem")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, SCHEMA_VERSIONS[-1], strict=True)


def test_every_object_is_accounted_for() -> None:
    kinds = sorted(o["kind"] for o in all_objects())
    assert kinds == sorted(
        [
            "ConfigMap",
            "ConfigMap",
            "Deployment",
            "Namespace",
            "NetworkPolicy",
            "PersistentVolumeClaim",
            "PrometheusRule",
            "Service",
            "ServiceAccount",
            "ServiceMonitor",
        ]
    )
    assert kustomization()["namespace"] == one("Namespace")["metadata"]["name"]
    for o in listed_resources():
        assert "namespace" not in o["metadata"], f"{_label(o)}: kustomize sets the namespace"


def test_single_writer_state_on_a_persistent_volume() -> None:
    deployment = one("Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    (state,) = [v for v in pod_spec()["volumes"] if v["name"] == "state"]
    claim = one("PersistentVolumeClaim")
    assert state["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    state_file = PurePosixPath(watcher_config()["state"])
    assert state_file.parent == PurePosixPath(mount_path("state"))


def test_pod_meets_the_restricted_pod_security_standard() -> None:
    assert one("Namespace")["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == (
        "restricted"
    )
    pod = pod_spec()["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert pod["runAsUser"] > 0
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
    security = container()["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"]["drop"] == ["ALL"]
    assert not security.get("privileged", False)
    assert "hostNetwork" not in pod_spec() and "hostPath" not in str(pod_spec()["volumes"])


def test_pod_runs_as_the_image_user() -> None:
    """runAsNonRoot needs a numeric uid; the pod's must be the one the image was built for."""
    (user,) = re.findall(r"^USER (\d+):(\d+)$", DOCKERFILE.read_text(), re.MULTILINE)
    pod = pod_spec()["securityContext"]
    assert (str(pod["runAsUser"]), str(pod["runAsGroup"])) == user


def test_probes_and_resources() -> None:
    probes = {
        name: (container()[name]["httpGet"]["path"], container()[name]["httpGet"]["port"])
        for name in ("startupProbe", "livenessProbe", "readinessProbe")
    }
    assert probes == {
        "startupProbe": ("/healthz", "metrics"),
        "livenessProbe": ("/healthz", "metrics"),
        "readinessProbe": ("/readyz", "metrics"),
    }
    (port,) = container()["ports"]
    assert (port["name"], port["containerPort"]) == ("metrics", LISTEN_PORT)
    resources = container()["resources"]
    assert {"cpu", "memory"} <= resources["requests"].keys()
    assert "memory" in resources["limits"]


def test_config_and_rules_are_mounted_where_the_config_says() -> None:
    args = container()["args"]
    assert args[:2] == ["run", "-c"]
    config_path = PurePosixPath(args[2])
    assert config_path.parent == PurePosixPath(mount_path("config"))
    volumes = {v["name"]: v for v in pod_spec()["volumes"]}
    assert volumes["config"]["configMap"]["name"] == "breakglass-watcher-config"
    assert config_path.name in configmap_data("breakglass-watcher-config")
    assert volumes["rules"]["configMap"]["name"] == "breakglass-watcher-rules"
    assert watcher_config()["rules"] == mount_path("rules")
    host, _, port = watcher_config()["listen"].rpartition(":")
    assert (host, int(port)) == ("0.0.0.0", LISTEN_PORT), "probes and scrapes come from outside"


def test_rules_in_the_configmap_are_valid(tmp_path: Path) -> None:
    for name, text in configmap_data("breakglass-watcher-rules").items():
        (tmp_path / name).write_text(text)
    rules = load_rules(tmp_path)
    assert rules.principals


def test_configmap_rules_are_the_repository_example() -> None:
    """kustomize reads no files outside its folder, so the example is copied: keep them equal."""
    shipped = ROOT / "deploy" / "kubernetes" / "rules" / "break-glass.yaml"
    assert shipped.read_text() == (ROOT / "rules" / "break-glass.yaml").read_text()


def test_config_in_the_configmap_is_valid(tmp_path: Path) -> None:
    from watcher.config import load_config

    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    for name, text in configmap_data("breakglass-watcher-rules").items():
        (rules_dir / name).write_text(text)
    # The only change: the rules mount point becomes this test's folder.
    config = watcher_config() | {"rules": str(rules_dir)}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    loaded = load_config(path)
    assert loaded.listen == ("0.0.0.0", LISTEN_PORT)
    assert set(loaded.sources) == {"eventbridge", "lookup"}


def test_image_is_set_by_kustomize_with_a_pinned_tag() -> None:
    (image,) = kustomization()["images"]
    assert container()["image"] == image["name"]
    assert image["newTag"] and image["newTag"] != "latest"


def test_service_account_carries_the_irsa_role() -> None:
    account = one("ServiceAccount")
    assert pod_spec()["serviceAccountName"] == account["metadata"]["name"]
    role_arn = account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
    assert role_arn.startswith("arn:aws:iam::") and ":role/" in role_arn


def test_service_and_service_monitor_reach_the_pod() -> None:
    service = one("Service")
    assert service["metadata"]["name"] == "breakglass-watcher", "the alerts' job label"
    pod_labels = one("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] in {p["name"] for p in container()["ports"]}
    assert service["spec"]["publishNotReadyAddresses"] is True

    monitor = one("ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == port["name"]
    assert endpoint["path"] == "/metrics"


def test_only_the_prometheus_namespace_reaches_the_port() -> None:
    policy = one("NetworkPolicy")
    pod_labels = one("Deployment")["spec"]["template"]["metadata"]["labels"]
    selector = policy["spec"]["podSelector"]["matchLabels"]
    assert selector.items() <= pod_labels.items()
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = policy["spec"]["ingress"]
    (source,) = rule["from"]
    assert source == {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
    }
    (port,) = rule["ports"]
    ports = {p["name"] for p in container()["ports"]}
    assert port["port"] in ports and port["protocol"] == "TCP"


def test_prometheus_rule_carries_exactly_the_alerts_of_alerts_yml() -> None:
    rule = one("PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["spec"]["groups"] == yaml.safe_load(ALERTS.read_text())["groups"]
