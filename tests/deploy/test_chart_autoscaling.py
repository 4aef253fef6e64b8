"""helm/wanfarm's autoscaling per GPU class, rendered by Helm's engine (tests/deploy/render.py): the
RayCluster as KubeRay and Ray's autoscaler read it, the controller's classes file as the scheduler
builds its classes from it, the worker pods' drain before they stop, and the values it refuses."""

from __future__ import annotations

import copy
import json
import shlex
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml
from ray.autoscaler._private.kuberay.autoscaling_config import _derive_autoscaling_config_from_ray_cr
from ray.autoscaler._private.node_provider_availability_tracker import NodeAvailabilitySummary
from ray.autoscaler._private.resource_demand_scheduler import _default_utilization_scorer, get_nodes_for

from controller.gpu_classes import load_gpu_classes
from scheduler.demand import CLASS_NAME, GpuClass, ScalingRules, class_resource
from tests.deploy.render import CHART, NAMESPACE, ChartRefused, render, the
from tests.deploy.validation import CRD_FILES, require_schemas, validate


def _groups(**changes: Any) -> list[dict[str, Any]]:
    """values.yaml's worker groups, the first one changed (a list is replaced whole, as `-f` does)."""
    groups = copy.deepcopy(yaml.safe_load((CHART / "values.yaml").read_text())["workerGroups"])
    groups[0].update(changes)
    return groups


def _validated(manifests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if any((m["apiVersion"], m["kind"]) in CRD_FILES for m in manifests):
        require_schemas()
    for manifest in manifests:
        validate(manifest)
    return manifests


def test_the_autoscaler_runs_with_the_values_options_as_ray_reads_them() -> None:
    values = {"autoscaling": {"idleTimeoutSeconds": 120, "upscalingMode": "Conservative"}}
    cluster = the(_validated(render(values)), "RayCluster")
    assert cluster["spec"]["enableInTreeAutoscaling"] is True
    assert cluster["spec"]["autoscalerOptions"] == {
        "idleTimeoutSeconds": 120,
        "upscalingMode": "Conservative",
    }
    # What Ray's autoscaler makes of this RayCluster, by its own code: timeouts, speed, node types.
    config = _derive_autoscaling_config_from_ray_cr(
        {**cluster, "metadata": {**cluster["metadata"], "namespace": NAMESPACE}}
    )
    assert config["idle_timeout_minutes"] == 2.0
    assert config["upscaling_speed"] == 1  # Conservative; Default and Aggressive do not rate-limit
    types = config["available_node_types"]
    assert types["consumer-12gb"]["resources"]["wanfarm_class_consumer_12gb"] == 1
    assert types["consumer-12gb"]["resources"]["GPU"] == 1
    assert (types["consumer-24gb"]["min_workers"], types["consumer-24gb"]["max_workers"]) == (0, 4)


def test_each_group_advertises_its_class_resource_one_unit_per_gpu() -> None:
    groups = _groups(gpusPerNode=2, name="a100-pair", gpu="A100 80GB")
    cluster = the(_validated(render({"workerGroups": groups})), "RayCluster")
    seen = {}
    for group in cluster["spec"]["workerGroupSpecs"]:
        params = group["rayStartParams"]
        # KubeRay pastes the value into `ray start --resources=...`: the shell's word must be JSON.
        (word,) = shlex.split(params["resources"])
        seen[group["groupName"]] = (json.loads(word), params["num-gpus"])
        limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
        assert limits["nvidia.com/gpu"] == int(params["num-gpus"])
    assert seen == {
        "a100-pair": ({class_resource("a100-pair"): 2}, "2"),
        "consumer-24gb": ({class_resource("consumer-24gb"): 1}, "1"),
        "consumer-32gb": ({class_resource("consumer-32gb"): 1}, "1"),
    }
    config = _derive_autoscaling_config_from_ray_cr(
        {**cluster, "metadata": {**cluster["metadata"], "namespace": NAMESPACE}}
    )
    assert config["available_node_types"]["a100-pair"]["resources"]["wanfarm_class_a100_pair"] == 2


def test_the_farms_request_grows_only_the_groups_of_its_classes_up_to_their_max() -> None:
    # Ray's own bin-packing, on the node types it derives from the rendered RayCluster, given the
    # request Cluster.request_gpus makes: one bundle {class resource: 1} per GPU wanted.
    groups = _groups(gpusPerNode=2, maxReplicas=3)
    cluster = the(render({"workerGroups": groups}), "RayCluster")
    config = _derive_autoscaling_config_from_ray_cr(
        {**cluster, "metadata": {**cluster["metadata"], "namespace": NAMESPACE}}
    )
    wanted = {"consumer-12gb": 3, "consumer-24gb": 6}
    bundles: list[dict[str, Any]] = [
        {class_resource(name): 1} for name, count in wanted.items() for _ in range(count)
    ]
    scorer = partial(_default_utilization_scorer, node_availability_summary=NodeAvailabilitySummary({}))
    added, short = get_nodes_for(
        config["available_node_types"], {}, config["head_node_type"], 100, bundles, scorer
    )
    # 3 GPUs of a 2-GPU class: 2 pods; 6 of consumer-24gb: its maxReplicas, 4, and 2 left short.
    assert dict(added) == {"consumer-12gb": 2, "consumer-24gb": 4}
    assert short == [{class_resource("consumer-24gb"): 1}] * 2


def test_a_group_of_min_zero_starts_with_no_pod_and_may_grow() -> None:
    cluster = the(_validated(render({"workerGroups": _groups(minReplicas=0, maxReplicas=6)})), "RayCluster")
    first = cluster["spec"]["workerGroupSpecs"][0]
    assert (first["minReplicas"], first["replicas"], first["maxReplicas"]) == (0, 0, 6)


def test_the_classes_file_builds_the_schedulers_classes(tmp_path: Path) -> None:
    groups = _groups(
        gpusPerNode=2, maxReplicas=3, ramGb=48, agentIdleTimeoutSeconds=60, agentHotIdleTimeoutSeconds=600
    )
    manifests = _validated(render({"workerGroups": groups, "autoscaling": {"scaleUpSeconds": 240}}))
    text = the(manifests, "ConfigMap", "-gpu-classes")["data"]["gpu-classes.json"]
    data = json.loads(text)
    # The contract of `wanfarm up --gpu-classes`: the keys are the dataclasses' fields.
    rules = ScalingRules(tuple(GpuClass(**c) for c in data.pop("classes")), **data)
    (tmp_path / "gpu-classes.json").write_text(text)
    assert load_gpu_classes(tmp_path / "gpu-classes.json") == rules  # as the head's `wanfarm up` reads it
    assert rules.scale_up_s == 240
    assert rules.classes == (
        GpuClass(
            "consumer-12gb",
            "RTX 3060",
            max_gpus=6,
            ram_gb=48,
            gpus_per_node=2,
            idle_release_s=60,
            hot_release_s=600,
        ),
        # ram_gb from the pods' memory limit (64Gi, 96Gi) when ramGb is not set
        GpuClass("consumer-24gb", "RTX 4090", max_gpus=4, ram_gb=64, idle_release_s=300, hot_release_s=900),
        GpuClass("consumer-32gb", "RTX 5090", max_gpus=2, ram_gb=96, idle_release_s=300, hot_release_s=900),
    )


def test_the_head_reads_the_classes_file_only_when_autoscaling() -> None:
    on = render()
    head = the(on, "RayCluster")["spec"]["headGroupSpec"]["template"]["spec"]
    assert "--gpu-classes /etc/wanfarm/gpu-classes.json" in head["containers"][0]["args"][0]
    (config,) = (v for v in head["volumes"] if v["name"] == "config")
    mounted = {
        item["path"]: source
        for source in config["projected"]["sources"]
        for item in next(iter(source.values()))["items"]
    }
    assert mounted["gpu-classes.json"]["configMap"]["name"] == the(on, "ConfigMap")["metadata"]["name"]
    assert mounted["keys.json"]["secret"]["name"] == "wanfarm-api-keys"
    assert {"name": "config", "mountPath": "/etc/wanfarm", "readOnly": True} in head["containers"][0][
        "volumeMounts"
    ]

    off = _validated(render({"autoscaling": {"enabled": False}}))
    cluster = the(off, "RayCluster")
    assert cluster["spec"]["enableInTreeAutoscaling"] is False
    assert "autoscalerOptions" not in cluster["spec"]
    assert (
        "--gpu-classes"
        not in cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["args"][0]
    )
    assert all(m["kind"] != "ConfigMap" for m in off)


def test_worker_pods_drain_their_agents_before_they_stop() -> None:
    keys = [
        {"key": "k-submit", "owner": "ci", "role": "submit"},
        {"key": "k-admin", "owner": "ops", "role": "admin"},
    ]
    values = {"drainGraceSeconds": 120, "service": {"port": 8080}, "apiKeys": {"keysJson": json.dumps(keys)}}
    manifests = _validated(render(values))
    service = the(manifests, "Service", "-api")
    secret = the(manifests, "Secret", "-api-keys")
    for group in the(manifests, "RayCluster")["spec"]["workerGroupSpecs"]:
        pod = group["template"]["spec"]
        (container,) = pod["containers"]
        assert pod["terminationGracePeriodSeconds"] == 120
        command = container["lifecycle"]["preStop"]["exec"]["command"]
        assert command == ["wanfarm", "drain", "--this-node", "--wait", "--timeout", "105"]
        env = {e["name"]: e for e in container["env"]}
        assert (
            env["WANFARM_SERVER"]["value"]
            == f"http://{service['metadata']['name']}:{service['spec']['ports'][0]['port']}"
        )
        ref = env["WANFARM_API_KEY"]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == secret["metadata"]["name"]
        assert secret["stringData"][ref["key"]] == "k-admin"  # the admin key: a drain needs the role
        assert "AWS_ACCESS_KEY_ID" in env  # the S3 credentials are still there


BAD_VALUES = [
    ({"workerGroups": _groups(minReplicas=5, maxReplicas=4)}, "minReplicas <= maxReplicas"),
    ({"workerGroups": _groups(name="GPU_12")}, 'name "GPU_12": use 1-32 lower-case letters'),
    ({"workerGroups": _groups(agentIdleTimeoutSeconds=0)}, "agentIdleTimeoutSeconds must be > 0"),
    (
        {"workerGroups": _groups(agentHotIdleTimeoutSeconds=100)},
        "agentHotIdleTimeoutSeconds (100) must be >=",
    ),
    ({"workerGroups": _groups(gpusPerNode=0)}, "gpusPerNode must be 1 or more"),
    ({"workerGroups": _groups(gpu="")}, "set gpu, the GPU-table name"),
    ({"workerGroups": _groups(name="consumer-24gb")}, 'name "consumer-24gb" is given twice'),
    ({"workerGroups": _groups(ramGb=None, resources={"limits": {"memory": "30G"}})}, "set ramGb"),
    (
        {"autoscaling": {"upscalingMode": "Fast"}},
        'upscalingMode "Fast": use Default, Aggressive or Conservative',
    ),
    ({"autoscaling": {"idleTimeoutSeconds": 0}}, "idleTimeoutSeconds must be > 0"),
    ({"drainGraceSeconds": 10}, "drainGraceSeconds must be > 15"),
    (
        {"autoscaling": {"enabled": False}, "workerGroups": _groups(minReplicas=0)},
        "all are 0: no GPU would ever start",
    ),
    ({"apiKeys": {"keysJson": '[{"key": "k", "owner": "o", "role": "submit"}]'}}, 'no key with role "admin"'),
]


@pytest.mark.parametrize(("values", "message"), BAD_VALUES, ids=[m for _, m in BAD_VALUES])
def test_values_the_farm_cannot_use_fail_with_the_reason(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ChartRefused) as refused:
        render(values)
    assert message in str(refused.value)


def test_the_chart_checks_class_names_as_the_scheduler_does() -> None:
    assert f'regexMatch "{CLASS_NAME.pattern}"' in (CHART / "templates" / "_classes.tpl").read_text()
