"""The cluster deployment (deploy/) against the real schemas of Dagster 1.13 and dagster-k8s 0.29.

No cluster is needed. The instance yaml goes through Dagster's own instance loader and schema. Each
configurable class in it is resolved and its config processed against that class's schema. The Helm
values' run launcher is mapped to the same dagster-k8s fields. A run pod is rendered by dagster-k8s
itself from the launcher config, the code server's environment and the README's GPU tag.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml
from dagster._config import process_config, validate_config
from dagster._core.code_pointer import ModuleCodePointer
from dagster._core.instance.config import dagster_instance_config, dagster_instance_config_schema
from dagster._core.origin import JobPythonOrigin, RepositoryPythonOrigin
from dagster._core.storage.dagster_run import DagsterRun
from dagster._serdes import class_from_code_pointer
from dagster._utils.tags import normalize_tags

dagster_k8s = pytest.importorskip("dagster_k8s", reason="the [k8s] extra is not installed")
from dagster_k8s import K8sRunLauncher  # noqa: E402
from dagster_k8s import launcher as k8s_launcher  # noqa: E402
from dagster_k8s.job import USER_DEFINED_K8S_CONFIG_KEY, construct_dagster_k8s_job  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
INSTANCE_YAML = DEPLOY / "dagster.yaml"
HELM_VALUES = DEPLOY / "helm" / "values.yaml"
DEPLOY_README = DEPLOY / "README.md"
DOCKERFILE = DEPLOY / "Dockerfile"
GRPC_MODULE = "coursegpt_assets.definitions"
#: what the run pods of a cluster see; deploy/README.md's `coursegpt-env` ConfigMap provides the same names
INSTANCE_ENV = {
    "DAGSTER_PG_HOST": "dagster-postgresql",
    "DAGSTER_PG_USERNAME": "dagster",
    "DAGSTER_PG_PASSWORD": "not-a-real-password",
    "DAGSTER_PG_DB": "dagster",
    "DAGSTER_K8S_JOB_NAMESPACE": "coursegpt",
    "COURSEGPT_LOGS_BUCKET": "my-bucket",
}
#: the launcher injects this one from `postgres_password_secret`; the ConfigMap carries the rest
INJECTED_BY_LAUNCHER = {"DAGSTER_PG_PASSWORD"}
#: top-level keys and per-deployment keys of the dagster/dagster chart's values.schema.json (1.13)
CHART_TOP_LEVEL = {
    "dagsterWebserver", "dagster-user-deployments", "postgresql", "generatePostgresqlPasswordSecret",
    "generateCeleryConfigSecret", "rabbitmq", "redis", "flower", "ingress", "imagePullSecrets",
    "computeLogManager", "scheduler", "runLauncher", "pythonLogs", "dagsterDaemon", "busybox", "migrate",
    "telemetry", "serviceAccount", "global", "retention", "additionalInstanceConfig",
}
CHART_USER_DEPLOYMENT = {
    "name", "image", "dagsterApiGrpcArgs", "codeServerArgs", "includeConfigInLaunchedRuns", "deploymentNamespace",
    "port", "env", "envConfigMaps", "envSecrets", "annotations", "nodeSelector", "affinity", "tolerations",
    "podSecurityContext", "securityContext", "resources", "livenessProbe", "readinessProbe", "startupProbe",
    "labels", "volumeMounts", "volumes", "schedulerName", "initContainers", "sidecarContainers",
}
#: how the chart writes runLauncher.config.k8sRunLauncher into the instance's K8sRunLauncher config
CHART_LAUNCHER_FIELDS = {
    "imagePullPolicy": "image_pull_policy", "jobNamespace": "job_namespace",
    "loadInclusterConfig": "load_incluster_config", "kubeconfigFile": "kubeconfig_file",
    "envConfigMaps": "env_config_maps", "envSecrets": "env_secrets", "envVars": "env_vars",
    "volumeMounts": "volume_mounts", "volumes": "volumes", "labels": "labels",
    "failPodOnRunFailure": "fail_pod_on_run_failure", "resources": "resources",
    "schedulerName": "scheduler_name", "securityContext": "security_context", "runK8sConfig": "run_k8s_config",
}
CHART_RUN_K8S_CONFIG = {
    "containerConfig": "container_config", "podSpecConfig": "pod_spec_config",
    "podTemplateSpecMetadata": "pod_template_spec_metadata", "jobSpecConfig": "job_spec_config",
    "jobMetadata": "job_metadata",
}


def load(path: Path):
    return yaml.safe_load(path.read_text())


def env_references(node) -> set[str]:
    """Every `{env: NAME}` in a yaml tree."""
    if isinstance(node, dict):
        if set(node) == {"env"} and isinstance(node["env"], str):
            return {node["env"]}
        return set().union(*(env_references(v) for v in node.values())) if node else set()
    if isinstance(node, list):
        return set().union(*(env_references(v) for v in node)) if node else set()
    return set()


def errors(result) -> list[str]:
    return [e.message for e in result.errors or []]


@pytest.fixture
def cluster_env(monkeypatch):
    for name, value in INSTANCE_ENV.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def user_deployment() -> dict:
    (deployment,) = load(HELM_VALUES)["dagster-user-deployments"]["deployments"]
    return deployment


def gpu_tags() -> dict:
    """The GPU run tags: the README's first ```json block."""
    match = re.search(r"```json\n(.*?)```", DEPLOY_README.read_text(), re.S)
    assert match, f"{DEPLOY_README}: no ```json block with the GPU run tags"
    return json.loads(match.group(1))


# -- deploy/dagster.yaml ------------------------------------------------------------------------------
def test_the_instance_yaml_loads_through_dagsters_instance_loader(tmp_path, cluster_env):
    shutil.copy(INSTANCE_YAML, tmp_path / "dagster.yaml")
    config, custom_instance_class = dagster_instance_config(str(tmp_path))
    assert custom_instance_class is None
    assert {"storage", "run_launcher", "run_coordinator", "scheduler", "compute_logs", "concurrency"} <= set(config)

    processed = process_config(dagster_instance_config_schema(), load(INSTANCE_YAML))
    assert processed.success, errors(processed)
    postgres = processed.value["storage"]["postgres"]["postgres_db"]
    assert (postgres["hostname"], postgres["db_name"], postgres["port"]) == ("dagster-postgresql", "dagster", 5432)


def test_the_gpu_pool_holds_one_slot_per_gpu_node_and_gates_whole_runs(tmp_path, cluster_env):
    """The pool limit of tuning_job/evaluation_report matches the GPU runs the queue allows at once."""
    from coursegpt_assets.definitions import defs

    shutil.copy(INSTANCE_YAML, tmp_path / "dagster.yaml")
    concurrency = dagster_instance_config(str(tmp_path))[0]["concurrency"]
    [gpu_runs] = [t["limit"] for t in concurrency["runs"]["tag_concurrency_limits"]
                  if t["key"] == "coursegpt/node-pool" and t["value"] == "gpu"]
    assert concurrency["pools"] == {"default_limit": gpu_runs, "granularity": "run"}
    graph = defs.resolve_asset_graph()
    pools = {key.to_user_string(): graph.get(key).pools for key in graph.get_all_asset_keys()
             if graph.get(key).is_materializable}
    assert {name for name, p in pools.items() if p} == {"tuning_job", "evaluation_report"}
    assert pools["tuning_job"] == pools["evaluation_report"] == {"gpu"}


def test_every_env_reference_is_set_in_run_pods():
    referenced = env_references(load(INSTANCE_YAML))
    assert referenced == set(INSTANCE_ENV), "keep INSTANCE_ENV in step with deploy/dagster.yaml"
    configmap = set(re.findall(r"--from-literal=([A-Z0-9_]+)=", DEPLOY_README.read_text()))
    missing = referenced - INJECTED_BY_LAUNCHER - configmap
    assert not missing, f"deploy/README.md's coursegpt-env ConfigMap lacks {sorted(missing)}"


@pytest.mark.parametrize("section", ["run_launcher", "run_coordinator", "scheduler", "compute_logs"])
def test_each_configurable_class_resolves_and_its_config_fits_its_schema(section, cluster_env):
    entry = load(INSTANCE_YAML)[section]
    cls = class_from_code_pointer(entry["module"], entry["class"])
    result = process_config(cls.config_type(), entry.get("config") or {})
    assert result.success, f"{section}: {errors(result)}"


def test_the_run_launcher_is_dagster_k8s_with_our_environment(cluster_env):
    entry = load(INSTANCE_YAML)["run_launcher"]
    assert class_from_code_pointer(entry["module"], entry["class"]) is K8sRunLauncher
    assert validate_config(K8sRunLauncher.config_type(), entry["config"]).success
    config = process_config(K8sRunLauncher.config_type(), entry["config"]).value
    assert config["job_namespace"] == "coursegpt"
    assert "COURSEGPT_ENV=gcp" in config["env_vars"]
    assert "coursegpt-secrets" in config["env_secrets"] and "coursegpt-env" in config["env_config_maps"]


def test_a_misspelt_launcher_key_is_rejected(cluster_env):
    """The negative control: the schema really is strict, so the passes above mean something."""
    config = {**load(INSTANCE_YAML)["run_launcher"]["config"], "job_namespce": "coursegpt"}
    result = process_config(K8sRunLauncher.config_type(), config)
    assert not result.success and any("job_namespce" in m for m in errors(result))


# -- the run pod dagster-k8s renders ------------------------------------------------------------------
def render_run_pod(monkeypatch, launcher_config: dict, container_context: dict, tags: dict):
    """The Job K8sRunLauncher would create, built the way `launch_run` builds it, with no cluster."""
    monkeypatch.setattr(k8s_launcher, "load_kubernetes_config", lambda **_: None)
    processed = process_config(K8sRunLauncher.config_type(), launcher_config)
    assert processed.success, errors(processed)
    launcher = K8sRunLauncher(**processed.value, k8s_client_batch_api=object(), k8s_client_core_api=object())
    origin = JobPythonOrigin("pair_pipeline_job", RepositoryPythonOrigin(
        executable_path="/usr/local/bin/python", code_pointer=ModuleCodePointer(GRPC_MODULE, "defs", None),
        container_image="us-central1-docker.pkg.dev/my-project/coursegpt/coursegpt-forge:0.1.0",
        container_context=container_context))
    run = DagsterRun(job_name="pair_pipeline_job", run_id="0f1e2d3c-0000-4000-8000-000000000000",
                     tags=normalize_tags(tags), job_code_origin=origin)
    context = launcher.get_container_context_for_run(run)
    job = construct_dagster_k8s_job(
        job_config=context.get_k8s_job_config(job_image=origin.repository_origin.container_image, run_launcher=launcher),
        args=["dagster", "api", "execute_run", "{}"], job_name="dagster-run-0f1e2d3c", component="run_worker",
        user_defined_k8s_config=context.run_k8s_config)
    return job.spec.template.spec, context.namespace


def helm_container_context(deployment: dict) -> dict:
    """What the chart hands the code server as DAGSTER_CLI_API_GRPC_CONTAINER_CONTEXT for our deployment."""
    return {"k8s": {"image_pull_policy": deployment["image"]["pullPolicy"], "env": deployment["env"],
                    "namespace": "coursegpt", "service_account_name": "coursegpt-dagster"}}


def test_a_gpu_tagged_run_lands_on_a_gpu_node_with_the_code_servers_environment(monkeypatch, cluster_env,
                                                                                 user_deployment):
    tags = gpu_tags()
    assert tags["coursegpt/node-pool"] == "gpu" and USER_DEFINED_K8S_CONFIG_KEY in tags
    launcher_config = load(INSTANCE_YAML)["run_launcher"]["config"]
    pod, namespace = render_run_pod(monkeypatch, launcher_config, helm_container_context(user_deployment), tags)
    (container,) = pod.containers
    assert namespace == "coursegpt" and pod.service_account_name == "coursegpt-dagster"
    assert pod.node_selector == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    assert any(t.key == "nvidia.com/gpu" and t.effect == "NoSchedule" for t in pod.tolerations)
    assert container.resources.limits["nvidia.com/gpu"] == "1"
    assert container.image.endswith("-cu128")
    env = {e.name: e for e in container.env}
    assert env["COURSEGPT_ENV"].value == "gcp" and env["COURSEGPT_STORE"].value.startswith("gs://")
    assert env["HF_TOKEN"].value_from.secret_key_ref.name == "coursegpt-secrets"
    assert {s.secret_ref.name for s in container.env_from if s.secret_ref} >= {"coursegpt-secrets"}


def test_an_untagged_run_stays_on_cpu_nodes(monkeypatch, cluster_env, user_deployment):
    launcher_config = load(INSTANCE_YAML)["run_launcher"]["config"]
    pod, _ = render_run_pod(monkeypatch, launcher_config, helm_container_context(user_deployment), {})
    (container,) = pod.containers
    assert not pod.node_selector and "nvidia.com/gpu" not in (container.resources.limits or {})
    assert container.image.endswith(":0.1.0")


# -- deploy/helm/values.yaml --------------------------------------------------------------------------
def test_helm_values_use_only_the_charts_keys(user_deployment):
    values = load(HELM_VALUES)
    assert set(values) <= CHART_TOP_LEVEL, sorted(set(values) - CHART_TOP_LEVEL)
    assert set(user_deployment) <= CHART_USER_DEPLOYMENT, sorted(set(user_deployment) - CHART_USER_DEPLOYMENT)
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["dagsterDaemon"]["enabled"] is True and values["postgresql"]["enabled"] is True
    assert values["dagster-user-deployments"]["enabled"] is True


def test_the_code_server_runs_our_definitions_in_the_gcp_environment(user_deployment):
    assert user_deployment["dagsterApiGrpcArgs"] == ["-m", GRPC_MODULE]
    assert importlib.util.find_spec(GRPC_MODULE) is not None
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["tool"]["dagster"]["module_name"] == GRPC_MODULE
    assert f"module_name: {GRPC_MODULE}" in (ROOT / "workspace.yaml").read_text()
    env = {e["name"]: e for e in user_deployment["env"]}
    assert env["COURSEGPT_ENV"]["value"] == "gcp" and env["COURSEGPT_STORE"]["value"].startswith("gs://")
    assert "GOOGLE_CLOUD_PROJECT" in env
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "coursegpt-secrets", "key": "HF_TOKEN",
                                                           "optional": True}
    assert "value" not in env["HF_TOKEN"], "the token comes from the Secret, never from the values file"


def test_the_image_named_in_the_values_is_the_one_the_readme_builds(user_deployment):
    repository = user_deployment["image"]["repository"]
    readme = DEPLOY_README.read_text()
    assert f"IMAGE={repository}\n" in readme
    assert gpu_tags()[USER_DEFINED_K8S_CONFIG_KEY]["container_config"]["image"].startswith(f"{repository}:")


def test_the_helm_run_launcher_maps_onto_dagster_k8s_fields(monkeypatch, cluster_env, user_deployment):
    chart = load(HELM_VALUES)["runLauncher"]["config"]["k8sRunLauncher"]
    unknown = set(chart) - set(CHART_LAUNCHER_FIELDS)
    assert not unknown, f"not a k8sRunLauncher value of the chart: {sorted(unknown)}"
    config = {CHART_LAUNCHER_FIELDS[k]: v for k, v in chart.items()}
    run_k8s = config.pop("run_k8s_config", {})
    assert set(run_k8s) <= set(CHART_RUN_K8S_CONFIG), sorted(set(run_k8s) - set(CHART_RUN_K8S_CONFIG))
    config["run_k8s_config"] = {CHART_RUN_K8S_CONFIG[k]: v for k, v in run_k8s.items()}
    # the chart fills these in from the release: the instance ConfigMap, the namespace, the PG secret
    config.update(instance_config_map="dagster-instance", job_namespace="coursegpt",
                  postgres_password_secret="dagster-postgresql-secret", service_account_name="coursegpt-dagster")
    pod, _ = render_run_pod(monkeypatch, config, helm_container_context(user_deployment), {})
    (container,) = pod.containers
    assert container.resources.requests == {"cpu": "2", "memory": "8Gi"}


def test_the_chart_version_is_the_pinned_dagster_release():
    pinned = re.search(r'"dagster==([0-9.]+)"', (ROOT / "pyproject.toml").read_text()).group(1)
    assert pinned == version("dagster")
    for text in (HELM_VALUES.read_text(), DEPLOY_README.read_text()):
        assert f"--version {pinned}" in text


# -- packaging ----------------------------------------------------------------------------------------
def test_the_k8s_extra_pins_dagster_k8s_to_the_dagster_release():
    """dagster-k8s 0.(minor+16).N ships with dagster 1.minor.N; pip cannot catch a mismatched pair early."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    core = next(d for d in pyproject["project"]["dependencies"] if d.startswith("dagster=="))
    k8s, postgres_pin = pyproject["project"]["optional-dependencies"]["k8s"]
    major, minor, patch = core.split("==")[1].split(".")
    library = f"0.{int(minor) + 16}.{patch}"
    assert (major, k8s, postgres_pin) == ("1", f"dagster-k8s=={library}", f"dagster-postgres=={library}")
    assert version("dagster-k8s") == library
    postgres = re.search(r"DAGSTER_POSTGRES_VERSION=([0-9.]+)", DOCKERFILE.read_text()).group(1)
    assert postgres == library, "the image's dagster-postgres must match dagster-k8s"


def test_the_dockerfile_builds_the_image_the_deployment_expects():
    text = DOCKERFILE.read_text()
    assert re.search(r"^FROM python:3\.11-slim$", text, re.M)
    torch_pin = next(d for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
                     if d.startswith("torch=="))
    assert f"ARG TORCH_VERSION={torch_pin.split('==')[1]}" in text and "ARG TORCH_VARIANT=cpu" in text
    assert "https://download.pytorch.org/whl/${TORCH_VARIANT}" in text
    assert '".[k8s]"' in text and "bubblewrap" in text
    assert f'"-m", "{GRPC_MODULE}"' in text
    # the editable install keeps training_plan.yaml beside the packages (plan.PROJECT_ROOT)
    assert "COPY pyproject.toml README.md training_plan.yaml" in text and "pip install -e" in text
