"""deploy/kubernetes-ha: the overlay of deploy/kubernetes for several replicas on DynamoDB.

The overlay is applied here the way kustomize applies it: the JSON patch (RFC 6902) to the base
Deployment, the delete patch to the PersistentVolumeClaim, the replaced config. The results are
validated against the Kubernetes schemas like the base's objects.
"""

from __future__ import annotations

import copy
from datetime import timedelta
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from dynamo import TEMPLATE
from test_deploy_aws import load_template
from test_deploy_kubernetes import K8S, SCHEMA_VERSIONS, Manifest, all_objects, configmap_data

from watcher.config import load_config
from watcher.settings import StoreChoice
from watcher.store.dynamodb import DynamoDbSettings

HA = K8S.parent / "kubernetes-ha"


def overlay() -> Manifest:
    document: Manifest = yaml.safe_load((HA / "kustomization.yaml").read_text())
    return document


def json_patch(document: Any, operations: list[dict[str, Any]]) -> Any:
    """RFC 6902 add, replace, remove and test (the operations the overlay uses)."""
    result = copy.deepcopy(document)
    for op in operations:
        *parents, last = [p for p in op["path"].split("/")[1:]]
        node = result
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        key: Any = int(last) if isinstance(node, list) else last
        if op["op"] == "test":
            assert node[key] == op["value"], f"{op['path']} is {node[key]!r}"
        elif op["op"] == "remove":
            del node[key]
        elif op["op"] in ("add", "replace"):
            if op["op"] == "replace":
                assert key in node or isinstance(node, list), op["path"]
            node[key] = op["value"]
        else:
            raise AssertionError(f"unsupported op {op['op']}")
    return result


def deployment() -> Manifest:
    (base,) = [o for o in all_objects() if o["kind"] == "Deployment"]
    (patch,) = [p for p in overlay()["patches"] if "target" in p]
    assert patch["target"] == {"kind": "Deployment", "name": base["metadata"]["name"]}
    patched: Manifest = json_patch(base, yaml.safe_load((HA / patch["path"]).read_text()))
    return patched


def pdb() -> Manifest:
    document: Manifest = yaml.safe_load((HA / "poddisruptionbudget.yaml").read_text())
    return document


@pytest.mark.parametrize(
    "version",
    [pytest.param(SCHEMA_VERSIONS[0], marks=pytest.mark.slow), SCHEMA_VERSIONS[-1]],
)
def test_the_patched_deployment_and_the_budget_match_the_schema(version: str) -> None:
    kubernetes_validate.validate(deployment(), version, strict=True)
    kubernetes_validate.validate(pdb(), version, strict=True)


def test_three_replicas_spread_over_zones_with_no_volume() -> None:
    spec = deployment()["spec"]
    assert spec["replicas"] == 3
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 1
    pod = spec["template"]["spec"]
    labels = spec["template"]["metadata"]["labels"]
    spread = {c["topologyKey"]: c for c in pod["topologySpreadConstraints"]}
    assert set(spread) == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
    for constraint in spread.values():
        assert constraint["labelSelector"]["matchLabels"].items() <= labels.items()
    assert not [v for v in pod["volumes"] if "persistentVolumeClaim" in v]
    mounted = {m["name"] for m in pod["containers"][0]["volumeMounts"]}
    assert mounted == {v["name"] for v in pod["volumes"]}
    (delete,) = [p for p in overlay()["patches"] if "target" not in p]
    removed = yaml.safe_load((HA / delete["path"]).read_text())
    (claim,) = [o for o in all_objects() if o["kind"] == "PersistentVolumeClaim"]
    assert removed["$patch"] == "delete"
    assert (removed["kind"], removed["metadata"]["name"]) == (
        "PersistentVolumeClaim",
        claim["metadata"]["name"],
    )


def test_the_budget_keeps_a_majority_of_the_replicas() -> None:
    spec = pdb()["spec"]
    template = deployment()["spec"]["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= template.items()
    assert 1 <= spec["minAvailable"] < deployment()["spec"]["replicas"]


def test_the_config_selects_the_table(tmp_path: Path) -> None:
    (generator,) = overlay()["configMapGenerator"]
    assert (generator["name"], generator["behavior"]) == ("breakglass-watcher-config", "replace")
    rules = tmp_path / "rules"
    rules.mkdir()
    for name, text in configmap_data("breakglass-watcher-rules").items():
        (rules / name).write_text(text)
    (file,) = generator["files"]
    config = yaml.safe_load((HA / file).read_text()) | {"rules": str(rules)}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    loaded = load_config(path)
    table = load_template(TEMPLATE)
    assert loaded.store == StoreChoice(
        "dynamodb",
        DynamoDbSettings(
            table["Parameters"]["TableName"]["Default"],
            "us-east-1",
            timedelta(seconds=15),
        ),
    )
