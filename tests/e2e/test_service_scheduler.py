"""The service controller on real agents: a service spread over three
agents in three zones, a rolling deployment that stays within its limits at
every poll, a circuit breaker that rolls back, a drained instance, a killed
agent replaced within seconds and its surplus stopped when it returns; and
a DAEMON service following simulated instances as they join and leave; and
scale-in choosing its tasks as the placement engine does (binpack frees the
emptiest instance), driven through the aws CLI."""

import json
import subprocess
import time

import pytest

from berthlib import (BUSYBOX as BB, ROOT_ACCESS_KEY_ID, ROOT_SECRET_ACCESS_KEY, BerthAgent, BerthServer,
                      berth_binary, busybox_image, hermetic_env, wait_for)

IMAGE = "berth-e2e/busybox:latest"
ZONES = ["us-east-1a", "us-east-1b", "us-east-1c"]


@pytest.fixture(scope="module")
def image():
    return busybox_image(IMAGE)


@pytest.fixture()
def fleet(image, tmp_path):
    server = BerthServer(tmp_path / "server", log_dir=tmp_path,
                         extra_args=["--agent-heartbeat-secs", "1", "--agent-timeout-secs", "3",
                                     "--service-interval-ms", "500"]).start()
    ecs = server.client("ecs")
    aws = server.aws(tmp_path / "cli")
    ecs.create_cluster(clusterName="default")
    agents = {z: BerthAgent(server.endpoint, tmp_path / z, tmp_path / f"{z}.log", z).start() for z in ZONES}
    yield server, ecs, aws, agents
    for a in agents.values():
        a.stop()
        a.remove_containers()
    server.kill()


def register(ecs, family, **extra):
    c = {"name": "app", "image": IMAGE, "memory": 16, "command": [BB, "sleep", "600"], "stopTimeout": 1}
    c.update(extra)
    return ecs.register_task_definition(family=family, containerDefinitions=[c])["taskDefinition"]["taskDefinitionArn"]


def service_tasks(ecs, service, desired="RUNNING"):
    arns = ecs.list_tasks(cluster="default", serviceName=service, desiredStatus=desired)["taskArns"]
    if not arns:
        return []
    out = []
    for i in range(0, len(arns), 100):
        out += ecs.describe_tasks(cluster="default", tasks=arns[i:i + 100])["tasks"]
    return out


def running(ecs, service):
    return [t for t in service_tasks(ecs, service) if t["lastStatus"] == "RUNNING"]


def describe(ecs, service):
    return ecs.describe_services(cluster="default", services=[service])["services"][0]


def stable(ecs, service, count):
    s = describe(ecs, service)
    return (len(s["deployments"]) == 1 and s["deployments"][0]["rolloutState"] == "COMPLETED"
            and s["runningCount"] == count and len(running(ecs, service)) == count)


def test_spread_rollout_drain_and_a_lost_agent(fleet):
    server, ecs, aws, agents = fleet
    zone_of = {a.arn: z for z, a in agents.items()}
    register(ecs, "svc")
    aws("ecs", "create-service", "--cluster", "default", "--service-name", "web", "--task-definition", "svc",
        "--desired-count", "6", "--placement-strategy", "type=spread,field=attribute:ecs.availability-zone")
    r = aws.run("ecs", "wait", "services-stable", "--cluster", "default", "--services", "web", timeout=120)
    assert r.returncode == 0, r.stderr
    per_zone = {}
    for t in running(ecs, "web"):
        per_zone[zone_of[t["containerInstanceArn"]]] = per_zone.get(zone_of[t["containerInstanceArn"]], 0) + 1
    assert per_zone == {z: 2 for z in ZONES}

    # A rolling deployment (100/200): never above 12 tasks, never below 6 running.
    register(ecs, "svc", environment=[{"name": "V", "value": "2"}])
    ecs.update_service(cluster="default", service="web", taskDefinition="svc")
    deadline = time.time() + 120
    while True:
        live = service_tasks(ecs, "web")
        assert len(live) <= 12, f"{len(live)} tasks above maximumPercent"
        assert sum(t["lastStatus"] == "RUNNING" for t in live) >= 6, "below minimumHealthyPercent"
        if stable(ecs, "web", 6) and all(t["taskDefinitionArn"].endswith(":2") for t in running(ecs, "web")):
            break
        assert time.time() < deadline, describe(ecs, "web")["deployments"]
        time.sleep(0.3)

    # Drain one instance: its tasks move elsewhere, then it holds none.
    drained = agents["us-east-1a"].arn
    ecs.update_container_instances_state(cluster="default", containerInstances=[drained], status="DRAINING")
    wait_for(lambda: stable(ecs, "web", 6) and all(t["containerInstanceArn"] != drained for t in running(ecs, "web")),
             timeout=90, what="tasks off the draining instance")
    ecs.update_container_instances_state(cluster="default", containerInstances=[drained], status="ACTIVE")

    # Kill an agent: its tasks are replaced on the others within seconds.
    victim = agents["us-east-1b"]
    lost = {t["taskArn"] for t in running(ecs, "web") if t["containerInstanceArn"] == victim.arn}
    assert lost
    killed = time.time()
    victim.stop()
    wait_for(lambda: sum(t["containerInstanceArn"] != victim.arn for t in running(ecs, "web")) >= 6,
             timeout=60, interval=0.2, what="replacements RUNNING elsewhere")
    replaced_in = time.time() - killed
    print(f"replacements RUNNING {replaced_in:.1f}s after SIGKILL of an agent")

    # It comes back: the tasks it still runs are surplus and get stopped.
    victim.start()
    wait_for(lambda: not [t for t in running(ecs, "web") if t["taskArn"] in lost], timeout=60,
             what="surplus tasks of the returning agent stopped")
    wait_for(lambda: stable(ecs, "web", 6), timeout=60, what="steady at 6")

    def containers_match():
        ids = subprocess.run(["docker", "ps", "-q", "--filter", f"label=com.berth.container-instance-arn={victim.arn}"],
                             capture_output=True, text=True).stdout.split()
        return len(ids) == len([t for t in running(ecs, "web") if t["containerInstanceArn"] == victim.arn])

    wait_for(containers_match, timeout=60, what="the returning agent to stop its replaced containers")


def test_a_broken_revision_trips_the_circuit_breaker_and_rolls_back(fleet):
    _, ecs, aws, _ = fleet
    good = register(ecs, "cb")
    ecs.create_service(cluster="default", serviceName="cb", taskDefinition="cb", desiredCount=2,
                       deploymentConfiguration={"deploymentCircuitBreaker": {"enable": True, "rollback": True}})
    wait_for(lambda: stable(ecs, "cb", 2), timeout=90, what="cb stable")
    ecs.register_task_definition(family="cb", containerDefinitions=[
        {"name": "app", "image": "127.0.0.1:1/berth-e2e/missing:1", "memory": 16}])
    ecs.update_service(cluster="default", service="cb", taskDefinition="cb")

    def rolled_back():
        s = describe(ecs, "cb")
        failed = [d for d in s["deployments"] if d.get("rolloutState") == "FAILED"]
        primary = [d for d in s["deployments"] if d["status"] == "PRIMARY"]
        return (failed or any("rolling back" in e["message"].lower() or "failed" in e["message"] for e in s["events"])) \
            and primary and primary[0]["taskDefinition"] == good and s

    s = wait_for(rolled_back, timeout=180, interval=1, what="circuit breaker and rollback")
    assert any("deployment failed" in e["message"] for e in s["events"]), [e["message"] for e in s["events"]][:5]
    wait_for(lambda: stable(ecs, "cb", 2), timeout=120, what="back to the good revision")
    assert all(t["taskDefinitionArn"] == good for t in running(ecs, "cb"))


def test_a_daemon_service_follows_instances(tmp_path):
    server = BerthServer(tmp_path / "server", log_dir=tmp_path,
                         extra_args=["--agent-heartbeat-secs", "1", "--agent-timeout-secs", "3",
                                     "--service-interval-ms", "500"]).start()
    ecs = server.client("ecs")
    ecs.create_cluster(clusterName="sim")
    env = hermetic_env()
    env.update(AWS_ACCESS_KEY_ID=ROOT_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY=ROOT_SECRET_ACCESS_KEY, RUST_LOG="info")
    procs = []

    def agents(n, name):
        p = subprocess.Popen([str(berth_binary()), "agent", "--server", server.endpoint, "--cluster", "sim",
                              "--runtime", "simulated", "--instances", str(n), "--data-dir", str(tmp_path / name),
                              "--poll-interval-ms", "300"],
                             stdout=subprocess.PIPE, stderr=open(tmp_path / f"{name}.log", "a"), env=env, text=True)
        assert "simulated instances" in p.stdout.readline() or n == 1
        procs.append(p)

    def daemon_tasks():
        arns = ecs.list_tasks(cluster="sim", serviceName="d", desiredStatus="RUNNING")["taskArns"]
        ts = ecs.describe_tasks(cluster="sim", tasks=arns)["tasks"] if arns else []
        return sorted(t["containerInstanceArn"] for t in ts if t["lastStatus"] == "RUNNING")

    try:
        agents(2, "first")
        ecs.register_task_definition(family="d", containerDefinitions=[{"name": "d", "image": "sim/d:1", "memory": 16}])
        ecs.create_service(cluster="sim", serviceName="d", taskDefinition="d", schedulingStrategy="DAEMON")
        instances = ecs.list_container_instances(cluster="sim")["containerInstanceArns"]
        wait_for(lambda: daemon_tasks() == sorted(instances), timeout=60, what="one daemon task per instance")
        agents(2, "second")
        instances = ecs.list_container_instances(cluster="sim")["containerInstanceArns"]
        assert len(instances) == 4
        wait_for(lambda: daemon_tasks() == sorted(instances), timeout=60, what="daemon on the new instances")
        assert describe_sim(ecs)["desiredCount"] == 4
        gone = instances[0]
        ecs.deregister_container_instance(cluster="sim", containerInstance=gone, force=True)
        wait_for(lambda: daemon_tasks() == sorted(instances[1:]), timeout=60, what="daemon off the removed instance")
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=30)
        server.kill()


def test_scale_in_follows_the_placement_strategy(tmp_path):
    """binpack(memory) packs 6 tasks of 900 MiB as 4 + 2 on instances of
    3,840 MiB; scaling in to 4 stops the two on the emptier instance (the
    engine's binpack rule frees the instance with the most memory), not two
    of the four on the fullest (the planner's own fallback order)."""
    server = BerthServer(tmp_path / "server", log_dir=tmp_path,
                         extra_args=["--service-interval-ms", "500"]).start()
    ecs = server.client("ecs")
    aws = server.aws(tmp_path / "cli")
    ecs.create_cluster(clusterName="sim")
    env = hermetic_env()
    env.update(AWS_ACCESS_KEY_ID=ROOT_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY=ROOT_SECRET_ACCESS_KEY, RUST_LOG="info")
    p = subprocess.Popen([str(berth_binary()), "agent", "--server", server.endpoint, "--cluster", "sim",
                          "--runtime", "simulated", "--instances", "3", "--data-dir", str(tmp_path / "agents"),
                          "--poll-interval-ms", "300"],
                         stdout=subprocess.PIPE, stderr=open(tmp_path / "agents.log", "a"), env=env, text=True)

    def layout():
        arns = ecs.list_tasks(cluster="sim", serviceName="packed", desiredStatus="RUNNING")["taskArns"]
        ts = ecs.describe_tasks(cluster="sim", tasks=arns)["tasks"] if arns else []
        per = {}
        for t in ts:
            if t["lastStatus"] == "RUNNING":
                per[t["containerInstanceArn"]] = per.get(t["containerInstanceArn"], 0) + 1
        return sorted(per.values(), reverse=True)

    try:
        assert "simulated instances" in p.stdout.readline()
        wait_for(lambda: len(ecs.list_container_instances(cluster="sim")["containerInstanceArns"]) == 3,
                 timeout=30, what="three simulated instances")
        ecs.register_task_definition(family="packed",
                                     containerDefinitions=[{"name": "app", "image": "sim/app:1", "memory": 900}])
        aws("ecs", "create-service", "--cluster", "sim", "--service-name", "packed", "--task-definition", "packed",
            "--desired-count", "6", "--placement-strategy", "type=binpack,field=memory")
        wait_for(lambda: layout() == [4, 2], timeout=60, what="6 tasks binpacked as 4 + 2")
        aws("ecs", "update-service", "--cluster", "sim", "--service", "packed", "--desired-count", "4")
        wait_for(lambda: layout() == [4] and ecs.describe_services(cluster="sim", services=["packed"])
                 ["services"][0]["runningCount"] == 4, timeout=60, what="the emptier instance freed")
        # Nothing else moved: the four on the full instance are the ones placed first.
        assert layout() == [4]
    finally:
        p.terminate()
        p.wait(timeout=30)
        server.kill()


def describe_sim(ecs):
    return ecs.describe_services(cluster="sim", services=["d"])["services"][0]
