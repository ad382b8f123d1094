"""deploy/ checked offline, the way each tool allows without Docker or a cluster:

- both instance files (compose, Kubernetes) by Dagster's own instance schema and by the
  config schema of each class they name (DockerRunLauncher, K8sRunLauncher,
  QueuedRunCoordinator, the Postgres storage), with every env var they read set;
- the compose file's structure: services, dependencies, health check, network, volumes,
  the image every service and run uses, the code server the workspace points at, the UI
  bound to 127.0.0.1;
- the Helm values against the keys of Dagster's chart schema (CHART_KEYS below);
- the rolling-evaluation Job through the Kubernetes client's own V1Job model, and its
  command through the CLI's parser.
Dagster offers no public call that validates an instance file without connecting to its
storage, so the instance checks use its config module, as `dagster instance info` does.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
import shutil

import pytest
import yaml

from alstm_pipeline_tests.conftest import REPO_ROOT

DEPLOY = REPO_ROOT / "deploy"
INSTANCE_ENV = {"DAGSTER_POSTGRES_HOST": "postgres", "DAGSTER_POSTGRES_USER": "dagster", "DAGSTER_POSTGRES_PASSWORD": "x",
                "DAGSTER_POSTGRES_DB": "dagster", "DAGSTER_PG_HOST": "postgres", "DAGSTER_PG_PASSWORD": "x"}


def _load(path):
    return yaml.safe_load((DEPLOY / path).read_text())


def test_every_deploy_yaml_parses():
    files = sorted(DEPLOY.rglob("*.yaml"))
    assert {path.relative_to(DEPLOY).as_posix() for path in files} >= {
        "docker/compose.yaml", "docker/dagster.yaml", "docker/workspace.yaml",
        "k8s/values.yaml", "k8s/dagster.yaml", "k8s/rolling-evaluation-job.yaml"}
    for path in files:
        assert yaml.safe_load(path.read_text()), path


def _validate_instance(folder, monkeypatch):
    """Dagster's instance schema, then each configurable class's own schema."""
    from dagster._config import validate_config
    from dagster._core.instance.config import dagster_instance_config

    for name, value in INSTANCE_ENV.items():
        monkeypatch.setenv(name, value)
    config, _ = dagster_instance_config(str(folder))
    for section in ("run_coordinator", "run_launcher"):
        entry = config[section]
        cls = getattr(importlib.import_module(entry["module"]), entry["class"])
        result = validate_config(cls.config_type(), entry["config"])
        assert result.success, (section, [error.message for error in result.errors])
    from dagster_postgres import DagsterPostgresStorage

    result = validate_config(DagsterPostgresStorage.config_type(), config["storage"]["postgres"])
    assert result.success, [error.message for error in result.errors]
    return config


@pytest.mark.parametrize("folder", ["docker", "k8s"])
def test_instance_files_pass_dagsters_instance_schema(folder, tmp_path, monkeypatch):
    pytest.importorskip("dagster_postgres")
    pytest.importorskip("dagster_docker" if folder == "docker" else "dagster_k8s")
    config = _validate_instance(DEPLOY / folder, monkeypatch)
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert config["run_monitoring"]["enabled"] is True
    # The same check fails on a misspelt key: it is a real check.
    broken = (DEPLOY / folder / "dagster.yaml").read_text().replace("max_concurrent_runs", "max_concurent_runs")
    (tmp_path / "dagster.yaml").write_text(broken)
    with pytest.raises(Exception, match="max_concurent_runs"):
        _validate_instance(tmp_path, monkeypatch)


def _port(command: list[str]) -> int:
    return int(command[command.index("-p") + 1])


def test_compose_file_wires_postgres_code_server_webserver_and_daemon():
    compose = _load("docker/compose.yaml")
    services = compose["services"]
    assert set(services) == {"postgres", "code", "webserver", "daemon"}
    for name, service in services.items():
        for dependency, condition in (service.get("depends_on") or {}).items():
            assert dependency in services, (name, dependency)
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency]
        assert set(service["networks"]) <= set(compose["networks"])
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            assert source.startswith("/") or source in compose["volumes"], (name, mount)
    code, webserver, daemon = services["code"], services["webserver"], services["daemon"]
    # One image for the code server, the webserver, the daemon and every run container.
    image = code["image"]
    assert webserver["image"] == daemon["image"] == image == code["environment"]["DAGSTER_CURRENT_IMAGE"]
    assert code["build"]["dockerfile"] == "deploy/Dockerfile"
    assert (REPO_ROOT / "deploy" / "docker" / code["build"]["context"] / "deploy" / "Dockerfile").resolve().exists()
    module = code["command"][code["command"].index("-m") + 1]
    assert importlib.util.find_spec(module) is not None
    assert webserver["ports"] == ["127.0.0.1:3000:3000"]  # the UI is not published beyond this host
    assert "/var/run/docker.sock:/var/run/docker.sock" in daemon["volumes"]  # it launches the run containers

    (server,) = [entry["grpc_server"] for entry in _load("docker/workspace.yaml")["load_from"]]
    assert server["host"] == "code" and server["port"] == _port(code["command"])
    assert webserver["command"][-1] == daemon["command"][-1] == "/opt/dagster/dagster_home/workspace.yaml"

    launcher = _load("docker/dagster.yaml")["run_launcher"]["config"]
    assert launcher["network"] == compose["networks"]["alstm"]["name"]
    home_volume = compose["volumes"]["home"]["name"]
    assert launcher["container_kwargs"]["volumes"] == [f"{home_volume}:/opt/dagster/home"]
    # The daemon hands these to each run container: it must have every one of them.
    assert set(launcher["env_vars"]) <= set(daemon["environment"])
    assert daemon["environment"]["ALSTM_PIPELINE_HOME"] == code["environment"]["ALSTM_PIPELINE_HOME"] == "/opt/dagster/home"


def test_dockerfile_copies_what_exists_and_installs_declared_extras():
    text = (DEPLOY / "Dockerfile").read_text()
    for source in re.findall(r"^COPY (.+) \S+$", text, flags=re.M):
        for path in source.split():
            assert (REPO_ROOT / path).exists(), path
    extras = re.search(r'pip install -e "\.\[([^\]]+)\]"', text).group(1).split(",")
    declared = re.search(r"\[project\.optional-dependencies\](.*?)\n\[", (REPO_ROOT / "pyproject.toml").read_text(), re.S).group(1)
    for extra in extras:
        assert re.search(rf"^{extra} = ", declared, flags=re.M), extra


# The keys of Dagster's Helm chart values schema (helm/dagster/values.schema.json, generated
# from helm/dagster/schema/schema/charts/dagster/values.py) for the sections this project
# sets. "*" = a free-form object or list the chart passes to Kubernetes as it is; a list
# holds the schema of its items.
_ANY = "*"
_IMAGE = {"repository": _ANY, "tag": _ANY, "pullPolicy": _ANY}
_K8S_COMMON = {key: _ANY for key in ("env", "envConfigMaps", "envSecrets", "annotations", "nodeSelector", "affinity",
                                     "tolerations", "podSecurityContext", "securityContext", "resources", "livenessProbe",
                                     "readinessProbe", "startupProbe", "labels", "volumeMounts", "volumes", "schedulerName")}
CHART_KEYS = {
    "global": {"postgresqlSecretName": _ANY, "dagsterHome": _ANY, "serviceAccountName": _ANY, "celeryConfigSecretName": _ANY},
    "generatePostgresqlPasswordSecret": _ANY,
    "postgresql": {"image": _IMAGE, "enabled": _ANY, "postgresqlHost": _ANY, "postgresqlUsername": _ANY,
                   "postgresqlPassword": _ANY, "postgresqlDatabase": _ANY, "postgresqlParams": _ANY,
                   "postgresqlScheme": _ANY, "service": {"port": _ANY}},
    "dagsterWebserver": {"replicaCount": _ANY, "image": _IMAGE, "nameOverride": _ANY, "pathPrefix": _ANY,
                         "service": {"type": _ANY, "port": _ANY, "annotations": _ANY}, "workspace": _ANY,
                         "deploymentLabels": _ANY, "enableReadOnly": _ANY, "dbStatementTimeout": _ANY,
                         "dbPoolRecycle": _ANY, "logLevel": _ANY, "initContainerResources": _ANY, **_K8S_COMMON},
    "dagster-user-deployments": {
        "enabled": _ANY, "enableSubchart": _ANY, "imagePullSecrets": _ANY,
        "deployments": [{"name": _ANY, "image": _IMAGE, "dagsterApiGrpcArgs": _ANY, "codeServerArgs": _ANY,
                         "includeConfigInLaunchedRuns": {"enabled": _ANY}, "deploymentNamespace": _ANY, "port": _ANY,
                         "initContainers": _ANY, "sidecarContainers": _ANY, **_K8S_COMMON}],
    },
    "runLauncher": {"type": _ANY, "config": {"k8sRunLauncher": {
        "image": _IMAGE, "imagePullPolicy": _ANY, "jobNamespace": _ANY, "loadInclusterConfig": _ANY, "kubeconfigFile": _ANY,
        "envConfigMaps": _ANY, "envSecrets": _ANY, "envVars": _ANY, "volumeMounts": _ANY, "volumes": _ANY, "labels": _ANY,
        "failPodOnRunFailure": _ANY, "resources": _ANY, "schedulerName": _ANY, "securityContext": _ANY,
        "runK8sConfig": {"containerConfig": _ANY, "podSpecConfig": _ANY, "podTemplateSpecMetadata": _ANY,
                         "jobSpecConfig": _ANY, "jobMetadata": _ANY}}, "celeryK8sRunLauncher": _ANY, "customRunLauncher": _ANY}},
    "dagsterDaemon": {
        "enabled": _ANY, "image": _IMAGE, "heartbeatTolerance": _ANY, "deploymentLabels": _ANY, "sensors": _ANY,
        "schedules": _ANY, "runRetries": _ANY, "initContainerResources": _ANY, **_K8S_COMMON,
        "runCoordinator": {"enabled": _ANY, "type": _ANY, "config": {"queuedRunCoordinator": {
            "maxConcurrentRuns": _ANY, "tagConcurrencyLimits": _ANY, "dequeueIntervalSeconds": _ANY,
            "dequeueNumWorkers": _ANY, "dequeueUseThreads": _ANY, "blockOpConcurrencyLimitedRuns": _ANY},
            "customRunCoordinator": _ANY}},
        # free-form in the schema; the chart writes these four into the instance's run_monitoring
        "runMonitoring": {"enabled": _ANY, "startTimeoutSeconds": _ANY, "pollIntervalSeconds": _ANY,
                          "maxResumeRunAttempts": _ANY, "freeSlotsAfterRunEndSeconds": _ANY},
    },
    "telemetry": {"enabled": _ANY},
}


def _unknown_keys(values, schema, path="") -> list[str]:
    if schema == _ANY:
        return []
    if isinstance(schema, list):
        return [problem for index, item in enumerate(values) for problem in _unknown_keys(item, schema[0], f"{path}[{index}]")]
    if not isinstance(values, dict):
        return [f"{path}: expected a mapping"]
    problems = [f"{path}.{key}" for key in values if key not in schema]
    return problems + [problem for key, value in values.items() if key in schema
                       for problem in _unknown_keys(value, schema[key], f"{path}.{key}")]


def test_helm_values_use_only_keys_of_dagsters_chart():
    values = _load("k8s/values.yaml")
    assert _unknown_keys(values, CHART_KEYS) == []
    assert _unknown_keys({"dagsterDaemon": {"runCoordinator": {"maxConcurrentRun": 1}}}, CHART_KEYS) == [
        ".dagsterDaemon.runCoordinator.maxConcurrentRun"]  # the check catches a misplaced key
    assert values["runLauncher"]["type"] in ("K8sRunLauncher", "CeleryK8sRunLauncher", "CustomRunLauncher")
    assert values["dagsterDaemon"]["runCoordinator"]["type"] == "QueuedRunCoordinator"
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    args = deployment["dagsterApiGrpcArgs"]
    assert importlib.util.find_spec(args[args.index("-m") + 1]) is not None
    env = deployment["env"]
    assert all(isinstance(value, str) for value in env.values())  # the chart's env map takes strings only
    assert env["ALSTM_PIPELINE_EXECUTOR"] == "k8s" and env["ALSTM_PIPELINE_TRAINING_GPU"] == "1"
    # The chart's instance and deploy/k8s/dagster.yaml say the same about runs.
    instance = _load("k8s/dagster.yaml")
    monitoring = values["dagsterDaemon"]["runMonitoring"]
    assert instance["run_monitoring"] == {"enabled": monitoring["enabled"], "start_timeout_seconds": monitoring["startTimeoutSeconds"],
                                          "poll_interval_seconds": monitoring["pollIntervalSeconds"],
                                          "max_resume_run_attempts": monitoring["maxResumeRunAttempts"]}
    queued = values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    assert instance["run_coordinator"]["config"]["max_concurrent_runs"] == queued["maxConcurrentRuns"]


def test_rolling_evaluation_job_is_a_valid_v1job_running_a_real_command():
    kubernetes = pytest.importorskip("kubernetes")
    from alstm_pipeline import cli

    document = _load("k8s/rolling-evaluation-job.yaml")
    client = kubernetes.client.ApiClient()

    class _Response:  # what ApiClient.deserialize reads
        data = json.dumps(document)

    job = client.deserialize(_Response(), "V1Job")
    # The model drops any key it does not know: a round trip that loses nothing has none.
    assert client.sanitize_for_serialization(job) == document
    (container,) = job.spec.template.spec.containers
    assert container.resources.limits == {"nvidia.com/gpu": "4"}
    assert job.spec.template.spec.tolerations[0].key == "nvidia.com/gpu"
    assert shutil.which(container.command[0]) is not None or container.command[0] == "alstm-pipeline"
    args = cli._parse_args(container.command[1:])
    assert args.command == "evaluate-rolling" and args.parallel == 4
