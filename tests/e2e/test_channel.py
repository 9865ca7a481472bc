"""The agent channel, liveness and recovery, driven with the real aws CLI:
DiscoverPollEndpoint, task payloads over the websocket, `agentConnected`
going false when heartbeats stop and true when the agent comes back, the
control plane restarted under running tasks, health checks, and spread
placement over several agents in different availability zones."""

import re
import subprocess
import time

import pytest

from berthlib import BUSYBOX as BB
from berthlib import BerthAgent, BerthServer, busybox_image, wait_for

IMAGE = "berth-e2e/busybox:latest"


@pytest.fixture(scope="module")
def image():
    return busybox_image(IMAGE)


@pytest.fixture()
def rig(image, tmp_path):
    """A server with a fast heartbeat and a short agent timeout, and one
    agent; everything is torn down afterwards."""
    server = BerthServer(tmp_path / "server", log_dir=tmp_path,
                         extra_args=["--agent-heartbeat-secs", "1", "--agent-timeout-secs", "4"]).start()
    aws = server.aws(tmp_path / "cli")
    aws("ecs", "create-cluster", "--cluster-name", "default")
    agents = []

    def agent(zone="us-east-1a", name="agent"):
        a = BerthAgent(server.endpoint, tmp_path / name, tmp_path / f"{name}.log", zone).start()
        agents.append(a)
        return a

    yield server, aws, agent
    for a in agents:
        a.stop()
        a.remove_containers()
    server.kill()


def describe_task(aws, arn):
    return aws("ecs", "describe-tasks", "--cluster", "default", "--tasks", arn)["tasks"][0]


def instance(aws, arn):
    return aws("ecs", "describe-container-instances", "--cluster", "default",
               "--container-instances", arn)["containerInstances"][0]


def register(aws, family, container):
    aws("ecs", "register-task-definition", "--family", family,
        "--container-definitions", __import__("json").dumps([container]))


def run_task(aws, family, *extra):
    out = aws("ecs", "run-task", "--cluster", "default", "--task-definition", family, *extra)
    assert out["failures"] == [], out
    return [t["taskArn"] for t in out["tasks"]]


def channel_metric(server):
    status, body = server.get("/metrics")
    assert status == 200
    m = re.search(rb"^berth_agent_channels_open (\d+)", body, re.M)
    return int(m.group(1)) if m else None


def test_discover_poll_endpoint_names_this_edge(rig):
    server, aws, agent = rig
    a = agent()
    out = aws("ecs", "discover-poll-endpoint", "--cluster", "default", "--container-instance", a.arn)
    assert out["endpoint"] == server.endpoint + "/"
    err = aws.fail("ecs", "discover-poll-endpoint", "--cluster", "default", "--container-instance", "nope")
    assert err.code == "InvalidParameterException"


def test_tasks_arrive_over_the_channel_and_heartbeats_decide_agent_connected(rig):
    server, aws, agent = rig
    a = agent()
    wait_for(lambda: channel_metric(server) == 1, timeout=15)
    assert instance(aws, a.arn)["agentConnected"] is True
    register(aws, "sleeper", {"name": "s", "image": IMAGE, "memory": 32, "command": [BB, "sleep", "600"]})
    [arn] = run_task(aws, "sleeper")
    t = wait_for(lambda: (d := describe_task(aws, arn))["lastStatus"] == "RUNNING" and d)
    runtime_id = t["containers"][0]["runtimeId"]

    # The agent dies without a word: after the timeout it is disconnected,
    # and no new task is placed on it.
    a.stop()
    wait_for(lambda: instance(aws, a.arn)["agentConnected"] is False, timeout=20)
    out = aws("ecs", "run-task", "--cluster", "default", "--task-definition", "sleeper")
    assert out["tasks"] == [] and out["failures"] == [{"arn": a.arn, "reason": "AGENT"}]

    # It comes back: connected again, the same container still running.
    a.start()
    wait_for(lambda: instance(aws, a.arn)["agentConnected"] is True, timeout=20)
    assert describe_task(aws, arn)["containers"][0]["runtimeId"] == runtime_id
    ids = subprocess.run(["docker", "ps", "-q", "--no-trunc", "--filter", f"label=com.berth.task-arn={arn}"],
                         capture_output=True, text=True, check=True).stdout.split()
    assert ids == [runtime_id]
    aws("ecs", "stop-task", "--cluster", "default", "--task", arn)
    wait_for(lambda: describe_task(aws, arn)["lastStatus"] == "STOPPED", timeout=60)


def test_a_restarted_control_plane_is_rejoined_and_state_converges(rig):
    server, aws, agent = rig
    a = agent()
    register(aws, "pair", {"name": "p", "image": IMAGE, "memory": 32, "command": [BB, "sleep", "600"]})
    arns = run_task(aws, "pair", "--count", "2")
    for arn in arns:
        wait_for(lambda arn=arn: describe_task(aws, arn)["lastStatus"] == "RUNNING")
    before = {arn: describe_task(aws, arn)["containers"][0]["runtimeId"] for arn in arns}

    # kill -9 the server and bring it back on the same address and data.
    server.kill()
    server.listen = server.address
    server.start()
    wait_for(lambda: channel_metric(server) == 1, timeout=30)
    assert instance(aws, a.arn)["agentConnected"] is True
    time.sleep(2)
    after = {arn: describe_task(aws, arn)["containers"][0]["runtimeId"] for arn in arns}
    assert after == before
    running = subprocess.run(["docker", "ps", "-q", "--no-trunc", "--filter", f"label=com.berth.container-instance-arn={a.arn}"],
                             capture_output=True, text=True, check=True).stdout.split()
    assert sorted(running) == sorted(before.values())

    # The rejoined channel carries new work: stop one, start another.
    aws("ecs", "stop-task", "--cluster", "default", "--task", arns[0])
    wait_for(lambda: describe_task(aws, arns[0])["lastStatus"] == "STOPPED", timeout=60)
    [fresh] = run_task(aws, "pair")
    wait_for(lambda: describe_task(aws, fresh)["lastStatus"] == "RUNNING")
    assert describe_task(aws, arns[1])["lastStatus"] == "RUNNING"


def test_a_failing_health_check_turns_the_task_unhealthy(rig):
    _, aws, agent = rig
    agent()
    register(aws, "checked", {
        "name": "web", "image": IMAGE, "memory": 32,
        "command": [BB, "sh", "-c", "touch /tmp/ok; sleep 600"],
        "healthCheck": {"command": ["CMD", BB, "test", "-e", "/tmp/ok"],
                        "interval": 5, "timeout": 2, "retries": 1, "startPeriod": 0},
    })
    [arn] = run_task(aws, "checked")
    t = wait_for(lambda: (d := describe_task(aws, arn))["healthStatus"] == "HEALTHY" and d, timeout=40)
    assert t["containers"][0]["healthStatus"] == "HEALTHY"
    # Break the check from outside: the container's health turns, and the task's with it.
    subprocess.run(["docker", "exec", t["containers"][0]["runtimeId"], BB, "rm", "/tmp/ok"], check=True)
    t = wait_for(lambda: (d := describe_task(aws, arn))["healthStatus"] == "UNHEALTHY" and d, timeout=40)
    assert t["containers"][0]["healthStatus"] == "UNHEALTHY"


def test_spread_places_tasks_across_agents_in_different_zones(rig):
    _, aws, agent = rig
    zones = ["us-east-1a", "us-east-1b", "us-east-1c"]
    agents = {agent(zone=z, name=f"agent-{z}").arn: z for z in zones}
    register(aws, "spread", {"name": "s", "image": IMAGE, "memory": 16, "command": [BB, "sleep", "600"]})
    arns = run_task(aws, "spread", "--count", "6", "--placement-strategy",
                    "type=spread,field=attribute:ecs.availability-zone")
    per_zone = {}
    for arn in arns:
        t = wait_for(lambda arn=arn: (d := describe_task(aws, arn))["lastStatus"] == "RUNNING" and d, timeout=60)
        zone = agents[t["containerInstanceArn"]]
        assert t["availabilityZone"] == zone
        per_zone[zone] = per_zone.get(zone, 0) + 1
    assert per_zone == {z: 2 for z in zones}
    # Each agent really runs its two containers.
    for arn in agents:
        ids = subprocess.run(["docker", "ps", "-q", "--filter", f"label=com.berth.container-instance-arn={arn}"],
                             capture_output=True, text=True, check=True).stdout.split()
        assert len(ids) == 2


def test_a_task_image_is_pulled_from_berths_registry_with_a_token(rig, tmp_path):
    server, aws, agent = rig
    agent()
    aws("ecr", "create-repository", "--repository-name", "e2e/pulled")
    image = f"{server.address}/e2e/pulled:v1"
    env = {**__import__("os").environ, "DOCKER_CONFIG": str(tmp_path / "docker-config")}
    password = aws.run("ecr", "get-login-password").stdout.strip()
    docker = lambda *a, **kw: subprocess.run(["docker", *a], env=env, capture_output=True, text=True, **kw)  # noqa: E731
    assert docker("login", "--username", "AWS", "--password-stdin", server.address, input=password).returncode == 0
    assert docker("tag", IMAGE, image).returncode == 0
    pushed = docker("push", image)
    assert pushed.returncode == 0, pushed.stderr
    # Gone from the engine: the agent must pull it, and the engine holds no
    # login of its own, so only the agent's token can get it through.
    assert docker("rmi", image).returncode == 0
    try:
        register(aws, "pulled", {"name": "p", "image": image, "memory": 32, "command": [BB, "sleep", "600"]})
        [arn] = run_task(aws, "pulled")
        t = wait_for(lambda: (d := describe_task(aws, arn))["lastStatus"] in ("RUNNING", "STOPPED") and d, timeout=60)
        assert t["lastStatus"] == "RUNNING", t.get("stoppedReason")
        assert t["pullStartedAt"] <= t["pullStoppedAt"]
        assert docker("image", "inspect", image).returncode == 0
    finally:
        docker("rmi", "-f", image)


def test_an_agent_s_dynamic_port_range_is_where_its_ports_come_from(rig):
    server, aws, _ = rig
    a = BerthAgent(server.endpoint, server.data_dir.parent / "ranged", server.data_dir.parent / "ranged.log",
                   "us-east-1a", extra_args=["--dynamic-host-port-range", "40100-40101"]).start()
    try:
        register(aws, "ported", {"name": "w", "image": IMAGE, "memory": 16,
                                  "command": [BB, "httpd", "-f", "-p", "8080", "-h", "/www"],
                                  "portMappings": [{"containerPort": 8080, "hostPort": 0}]})
        arns = run_task(aws, "ported", "--count", "2")
        ports = set()
        for arn in arns:
            t = wait_for(lambda arn=arn: (d := describe_task(aws, arn))["lastStatus"] == "RUNNING" and d, timeout=60)
            ports.add(t["containers"][0]["networkBindings"][0]["hostPort"])
        assert ports == {40100, 40101}
        # The range is used up: a third task gets ECS's RESOURCE:PORTS.
        out = aws("ecs", "run-task", "--cluster", "default", "--task-definition", "ported")
        assert out["tasks"] == [] and out["failures"] == [{"arn": a.arn, "reason": "RESOURCE:PORTS"}]
    finally:
        a.stop()
        a.remove_containers()
