"""`berth agent` on the local Docker Engine, driven with the real aws CLI:
tasks really run, stop, report exit codes, and survive an agent restart.

The image is built here, from the static busybox of Debian's
`busybox-static` package (`docker import`), never pulled."""

import subprocess
import time
import urllib.request

import pytest

from berthlib import BUSYBOX as BB
from berthlib import BerthAgent as Agent
from berthlib import busybox_image, wait_for

IMAGE = "berth-e2e/busybox:latest"


@pytest.fixture(scope="module")
def image():
    return busybox_image(IMAGE)


@pytest.fixture(scope="module")
def cluster(image, tmp_path_factory):
    from berthlib import BerthServer
    base = tmp_path_factory.mktemp("agent")
    server = BerthServer(base / "server", log_dir=base).start()
    ecs = server.client("ecs")
    ecs.create_cluster(clusterName="default")
    agent = Agent(server.endpoint, base / "agent", base / "agent.log", "us-east-1a").start()
    yield server, ecs, agent, base
    agent.stop()
    agent.remove_containers()
    server.kill()


def task_state(ecs, arn):
    return ecs.describe_tasks(cluster="default", tasks=[arn])["tasks"][0]


def test_web_task_serves_on_a_dynamic_host_port_and_survives_an_agent_restart(cluster):
    server, ecs, agent, base = cluster
    ecs.register_task_definition(family="web", containerDefinitions=[{
        "name": "web", "image": IMAGE, "memory": 64, "essential": True,
        "command": [BB, "httpd", "-f", "-p", "8080", "-h", "/www"],
        "portMappings": [{"containerPort": 8080, "hostPort": 0}],
    }])
    arn = ecs.run_task(cluster="default", taskDefinition="web")["tasks"][0]["taskArn"]
    t = wait_for(lambda: (s := task_state(ecs, arn))["lastStatus"] == "RUNNING" and s)
    binding = t["containers"][0]["networkBindings"][0]
    assert 49153 <= binding["hostPort"] <= 65535
    body = urllib.request.urlopen(f"http://127.0.0.1:{binding['hostPort']}/", timeout=5).read()
    assert body == b"hello from berth\n"
    runtime_id = t["containers"][0]["runtimeId"]

    # Restart the agent: the same container keeps running, nothing is duplicated.
    agent.stop()
    agent.start()
    time.sleep(2)
    assert task_state(ecs, arn)["containers"][0]["runtimeId"] == runtime_id
    names = subprocess.run(["docker", "ps", "--filter", f"label=com.berth.task-arn={arn}", "--format", "{{.ID}}"],
                           capture_output=True, text=True, check=True).stdout.split()
    assert len(names) == 1 and runtime_id.startswith(names[0])

    ecs.stop_task(cluster="default", task=arn, reason="e2e")
    stopped = wait_for(lambda: (s := task_state(ecs, arn))["lastStatus"] == "STOPPED" and s, timeout=60)
    assert stopped["stopCode"] == "UserInitiated"


def test_essential_exit_stops_the_task_with_its_exit_code(cluster):
    _, ecs, _, _ = cluster
    ecs.register_task_definition(family="exit3", containerDefinitions=[{
        "name": "x", "image": IMAGE, "memory": 32, "command": [BB, "sh", "-c", "sleep 1; exit 3"]}])
    arn = ecs.run_task(cluster="default", taskDefinition="exit3")["tasks"][0]["taskArn"]
    t = wait_for(lambda: (s := task_state(ecs, arn))["lastStatus"] == "STOPPED" and s)
    assert t["containers"][0]["exitCode"] == 3
    assert t["stopCode"] == "EssentialContainerExited"
    assert t["stoppedReason"] == "Essential container in task exited"


def test_stop_timeout_then_sigkill(cluster):
    _, ecs, _, _ = cluster
    ecs.register_task_definition(family="stubborn", containerDefinitions=[{
        "name": "s", "image": IMAGE, "memory": 32, "stopTimeout": 2,
        "command": [BB, "sh", "-c", "trap '' TERM; while true; do sleep 1; done"]}])
    arn = ecs.run_task(cluster="default", taskDefinition="stubborn")["tasks"][0]["taskArn"]
    wait_for(lambda: task_state(ecs, arn)["lastStatus"] == "RUNNING")
    started = time.time()
    ecs.stop_task(cluster="default", task=arn)
    t = wait_for(lambda: (s := task_state(ecs, arn))["lastStatus"] == "STOPPED" and s)
    assert time.time() - started >= 2
    assert t["containers"][0]["exitCode"] == 137


def test_depends_on_success_runs_in_order(cluster):
    _, ecs, _, _ = cluster
    ecs.register_task_definition(family="chain", containerDefinitions=[
        {"name": "init", "image": IMAGE, "memory": 32, "essential": False,
         "command": [BB, "sh", "-c", "sleep 1; exit 0"]},
        {"name": "app", "image": IMAGE, "memory": 32,
         "dependsOn": [{"containerName": "init", "condition": "SUCCESS"}],
         "command": [BB, "sh", "-c", "sleep 30"]},
    ])
    arn = ecs.run_task(cluster="default", taskDefinition="chain")["tasks"][0]["taskArn"]
    t = wait_for(lambda: (s := task_state(ecs, arn))["lastStatus"] == "RUNNING" and s)
    by_name = {c["name"]: c for c in t["containers"]}
    assert by_name["init"]["lastStatus"] == "STOPPED" and by_name["init"]["exitCode"] == 0
    assert by_name["app"]["lastStatus"] == "RUNNING"
    ecs.stop_task(cluster="default", task=arn)


def test_too_much_memory_is_a_resource_failure(cluster):
    _, ecs, agent, _ = cluster
    ecs.register_task_definition(family="huge", containerDefinitions=[
        {"name": "h", "image": IMAGE, "memory": 10_000_000, "command": [BB, "true"]}])
    out = ecs.run_task(cluster="default", taskDefinition="huge")
    assert out["tasks"] == []
    assert out["failures"] == [{"arn": agent.arn, "reason": "RESOURCE:MEMORY"}]
