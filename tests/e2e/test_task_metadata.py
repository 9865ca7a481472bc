"""The task metadata endpoint (v4, v3 alias) that `berth agent` serves to
the containers it runs, as ECS does: a container finds its own task in
`$ECS_CONTAINER_METADATA_URI_V4/task`, from bridge and from host network
mode. The agent listens on an ephemeral port (`--metadata-port 0`), so
several agents can share a host; containers learn the port from their
environment.

The image is Debian's static busybox (`docker import`), never pulled."""

import json
import re
import subprocess
import urllib.error
import urllib.request

import pytest

from berthlib import BUSYBOX as BB
from berthlib import BerthAgent, BerthServer, busybox_image, cluster_arn, wait_for

CLUSTER = "meta"
ZONE = "us-east-1c"

# Polls the endpoint until the task document names a created container
# (the agent records Docker ids on its pass after the start), prints the
# task and container documents on one line each, then stays up. (No
# `wget -T`: Debian's static busybox crashes on it.)
SCRIPT = f"""
B={BB}
for i in $($B seq 1 240); do
  if $B wget -q -O /tmp/task.json "$ECS_CONTAINER_METADATA_URI_V4/task" \\
     && $B grep -q '"DockerId":"[0-9a-f]' /tmp/task.json; then
    break
  fi
  $B sleep 0.25
done
$B printf 'TASK %s\\n' "$($B cat /tmp/task.json)"
$B wget -q -O /tmp/self.json "$ECS_CONTAINER_METADATA_URI_V4" \\
  && $B printf 'SELF %s\\n' "$($B cat /tmp/self.json)"
$B wget -q -O /tmp/v3.json "$ECS_CONTAINER_METADATA_URI/task" \\
  && $B printf 'V3TASK %s\\n' "$($B cat /tmp/v3.json)"
exec $B sleep 600
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    image = busybox_image()
    base = tmp_path_factory.mktemp("metadata")
    server = BerthServer(base / "server", log_dir=base).start()
    ecs = server.client("ecs")
    ecs.create_cluster(clusterName=CLUSTER)
    agent = BerthAgent(server.endpoint, base / "agent", base / "agent.log", ZONE, cluster=CLUSTER,
                       extra_args=["--metadata-port", "0"]).start()
    yield ecs, agent, image
    agent.stop()
    agent.remove_containers()
    server.kill()


def task_state(ecs, arn):
    return ecs.describe_tasks(cluster=CLUSTER, tasks=[arn])["tasks"][0]


def docker_logs(container_id: str) -> str:
    out = subprocess.run(["docker", "logs", container_id], capture_output=True, text=True)
    return out.stdout


def container_env(container_id: str) -> dict:
    out = subprocess.run(["docker", "inspect", "--format", "{{json .Config.Env}}", container_id],
                         capture_output=True, text=True, check=True).stdout
    return dict(kv.split("=", 1) for kv in json.loads(out))


def printed(logs: str, tag: str):
    """The JSON document the container printed after `tag`, if any."""
    for line in logs.splitlines():
        if line.startswith(tag + " "):
            return json.loads(line[len(tag) + 1:])
    return None


def get_json(url: str):
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def run_and_read(ecs, image: str, family: str, network_mode: str | None):
    kwargs = {"networkMode": network_mode} if network_mode else {}
    ecs.register_task_definition(family=family, containerDefinitions=[{
        "name": "app", "image": image, "memory": 32, "cpu": 64, "stopTimeout": 2,
        "environment": [{"name": "ECS_CONTAINER_METADATA_URI_V4", "value": "http://user-value.invalid"}],
        "command": [BB, "sh", "-c", SCRIPT],
    }], **kwargs)
    arn = ecs.run_task(cluster=CLUSTER, taskDefinition=family)["tasks"][0]["taskArn"]
    t = wait_for(lambda: (s := task_state(ecs, arn))["lastStatus"] == "RUNNING" and s, timeout=60)
    runtime_id = t["containers"][0]["runtimeId"]
    logs = wait_for(lambda: (out := docker_logs(runtime_id)) and "TASK " in out and "V3TASK " in out and out,
                    timeout=90)
    return arn, runtime_id, logs


def test_a_bridge_container_reads_its_task_and_itself(cluster):
    ecs, _, image = cluster
    arn, runtime_id, logs = run_and_read(ecs, image, "meta-bridge", None)

    # The agent's values win over the task definition's.
    env = container_env(runtime_id)
    uri = env["ECS_CONTAINER_METADATA_URI_V4"]
    assert re.fullmatch(r"http://[0-9.]+:[1-9][0-9]*/v4/[A-Za-z0-9_-]+", uri), uri
    assert env["ECS_CONTAINER_METADATA_URI"] == uri.replace("/v4/", "/v3/")

    task = printed(logs, "TASK")
    assert task["TaskARN"] == arn
    assert task["Cluster"] in (CLUSTER, cluster_arn(CLUSTER))
    assert task["Family"] == "meta-bridge"
    assert task["Revision"] == "1"
    assert task["LaunchType"] == "EC2"
    assert task["AvailabilityZone"] == ZONE
    assert task["DesiredStatus"] == "RUNNING"
    assert [c["Name"] for c in task["Containers"]] == ["app"]
    assert task["Containers"][0]["DockerId"] == runtime_id

    me = printed(logs, "SELF")
    assert me["Name"] == "app"
    assert me["DockerId"] == runtime_id
    assert me["Image"] == image
    assert me["ImageID"].startswith("sha256:")
    assert me["Type"] == "NORMAL"
    assert me["Limits"]["Memory"] == 32 and me["Limits"]["CPU"] == 64
    assert me["KnownStatus"] == "RUNNING"
    assert me["Labels"]["com.amazonaws.ecs.task-arn"] == arn
    assert me["StartedAt"].endswith("Z")
    network = me["Networks"][0]
    assert network["NetworkMode"] == "bridge"
    assert re.fullmatch(r"[0-9.]+", network["IPv4Addresses"][0])

    assert printed(logs, "V3TASK")["TaskARN"] == arn

    # The same endpoint, from the host.
    status, tagged = get_json(uri + "/taskWithTags")
    assert status == 200
    assert tagged["TaskARN"] == arn
    assert isinstance(tagged["TaskTags"], dict) and isinstance(tagged["ContainerInstanceTags"], dict)
    status, stats = get_json(uri + "/stats")
    assert status == 200 and "cpu_stats" in stats and "memory_stats" in stats
    status, task_stats = get_json(uri + "/task/stats")
    assert status == 200 and list(task_stats) == [runtime_id]
    assert "cpu_stats" in task_stats[runtime_id]
    unknown = uri.rsplit("/", 1)[0] + "/no-such-endpoint"
    for path in ("", "/task", "/stats"):
        status, body = get_json(unknown + path)
        assert status == 404, path
        assert isinstance(body, str)

    ecs.stop_task(cluster=CLUSTER, task=arn)
    wait_for(lambda: task_state(ecs, arn)["lastStatus"] == "STOPPED", timeout=60)


def test_a_host_mode_container_reads_its_task(cluster):
    ecs, _, image = cluster
    arn, runtime_id, logs = run_and_read(ecs, image, "meta-host", "host")
    task = printed(logs, "TASK")
    assert task["TaskARN"] == arn
    assert task["Containers"][0]["DockerId"] == runtime_id
    assert printed(logs, "SELF")["Networks"][0]["NetworkMode"] == "host"
    ecs.stop_task(cluster=CLUSTER, task=arn)
    wait_for(lambda: task_state(ecs, arn)["lastStatus"] == "STOPPED", timeout=60)
