"""On a DRAINING container instance the DAEMON service's task leaves last.

Three simulated instances (one `berth agent --runtime simulated
--instances 3`), a DAEMON service on all of them and a REPLICA service of
six tasks spread over them. Draining an instance with the aws CLI replaces
the replica tasks elsewhere; the daemon task there must stay RUNNING until
every other task on the instance is STOPPED, then stop itself. A
standalone task is not stopped by a drain, so it holds the daemon task on
its instance until the user stops it.

At every poll the daemon task is read first, then the other tasks of the
instance: statuses only move forward, so if the daemon task already reads
as stopping, the others read afterwards must all be STOPPED. The stop
timestamps the server records are compared at the end as well, so a
daemon task that left before the others fails the test even between polls.
"""

import subprocess
import time

import pytest

from berthlib import (ROOT_ACCESS_KEY_ID, ROOT_SECRET_ACCESS_KEY, BerthServer, berth_binary, hermetic_env,
                      wait_for)

CLUSTER = "drain"
DAEMON = "agentd"
WEB = "web"
REPLICAS = 6
POLL = 0.1


@pytest.fixture()
def sim(tmp_path):
    server = BerthServer(tmp_path / "server", log_dir=tmp_path,
                         extra_args=["--agent-heartbeat-secs", "1", "--agent-timeout-secs", "3",
                                     "--service-interval-ms", "300"]).start()
    aws = server.aws(tmp_path / "cli")
    aws("ecs", "create-cluster", "--cluster-name", CLUSTER)
    env = hermetic_env()
    env.update(AWS_ACCESS_KEY_ID=ROOT_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY=ROOT_SECRET_ACCESS_KEY, RUST_LOG="info")
    agent = subprocess.Popen(
        [str(berth_binary()), "agent", "--server", server.endpoint, "--cluster", CLUSTER,
         "--runtime", "simulated", "--instances", "3", "--data-dir", str(tmp_path / "agents"),
         "--poll-interval-ms", "300"],
        stdout=subprocess.PIPE, stderr=open(tmp_path / "agent.log", "a"), env=env, text=True)
    try:
        line = agent.stdout.readline()
        assert "registered 3 simulated instances" in line, line
        yield server, server.client("ecs"), aws
    finally:
        agent.terminate()
        agent.wait(timeout=30)
        server.kill()


def describe_tasks(ecs, arns):
    return ecs.describe_tasks(cluster=CLUSTER, tasks=list(arns))["tasks"] if arns else []


def service_tasks(ecs, service):
    arns = ecs.list_tasks(cluster=CLUSTER, serviceName=service, desiredStatus="RUNNING")["taskArns"]
    return describe_tasks(ecs, arns)


def running(ecs, service):
    return [t for t in service_tasks(ecs, service) if t["lastStatus"] == "RUNNING"]


def describe_service(ecs, service):
    return ecs.describe_services(cluster=CLUSTER, services=[service])["services"][0]


def steady(ecs, service, count):
    s = describe_service(ecs, service)
    return (len(s["deployments"]) == 1 and s["deployments"][0]["rolloutState"] == "COMPLETED"
            and s["runningCount"] == count and s["pendingCount"] == 0
            and len(service_tasks(ecs, service)) == count and len(running(ecs, service)) == count)


def on(tasks, instance):
    return [t for t in tasks if t["containerInstanceArn"] == instance]


def is_stopping(task):
    return task["desiredStatus"] != "RUNNING" or task["lastStatus"] != "RUNNING"


class DrainWatch:
    """Polls one draining instance and checks the daemon-last rule at every
    poll. `others` are the ARNs of every non-daemon task on the instance."""

    def __init__(self, ecs, instance, daemon_arn, others):
        self.ecs, self.instance, self.daemon_arn, self.others = ecs, instance, daemon_arn, list(others)
        self.polls = 0
        self.held = 0  # polls where the daemon task was RUNNING while another task was not STOPPED

    def poll(self):
        daemon = describe_tasks(self.ecs, [self.daemon_arn])[0]  # first: see the module docstring
        others = describe_tasks(self.ecs, self.others)
        assert len(others) == len(self.others)
        unfinished = [t for t in others if t["lastStatus"] != "STOPPED"]
        self.polls += 1
        if unfinished:
            assert not is_stopping(daemon), (
                f"daemon task is {daemon['lastStatus']} (desired {daemon['desiredStatus']}, "
                f"{daemon.get('stoppedReason')!r}) while other tasks on the draining instance are not STOPPED: "
                + ", ".join(f"{t['group']} {t['lastStatus']}/{t['desiredStatus']}" for t in unfinished))
            self.held += 1
        return daemon, others

    def until(self, predicate, timeout, what):
        deadline = time.monotonic() + timeout
        while True:
            daemon, others = self.poll()
            if predicate(daemon, others):
                return daemon, others
            assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
            time.sleep(POLL)


def drain(aws, instance):
    out = aws("ecs", "update-container-instances-state", "--cluster", CLUSTER,
              "--container-instances", instance, "--status", "DRAINING")
    assert out["failures"] == []
    assert [ci["status"] for ci in out["containerInstances"]] == ["DRAINING"]


def test_the_daemon_task_leaves_a_draining_instance_last(sim):
    server, ecs, aws = sim
    instances = sorted(aws("ecs", "list-container-instances", "--cluster", CLUSTER)["containerInstanceArns"])
    assert len(instances) == 3
    for family, image in ((DAEMON, "sim/agentd:1"), (WEB, "sim/web:1"), ("batch", "sim/batch:1")):
        ecs.register_task_definition(family=family, containerDefinitions=[
            {"name": family, "image": image, "memory": 32}])

    # The daemon first, so the replicas' spread sees equal instances.
    aws("ecs", "create-service", "--cluster", CLUSTER, "--service-name", DAEMON, "--task-definition", DAEMON,
        "--scheduling-strategy", "DAEMON")
    wait_for(lambda: sorted(t["containerInstanceArn"] for t in running(ecs, DAEMON)) == instances
             and steady(ecs, DAEMON, 3), timeout=60, what="one daemon task per instance")
    assert describe_service(ecs, DAEMON)["desiredCount"] == 3
    aws("ecs", "create-service", "--cluster", CLUSTER, "--service-name", WEB, "--task-definition", WEB,
        "--desired-count", str(REPLICAS), "--placement-strategy", "type=spread,field=instanceId")
    wait_for(lambda: steady(ecs, WEB, REPLICAS), timeout=60, what="the replica service steady")
    web0 = running(ecs, WEB)
    assert sorted(len(on(web0, i)) for i in instances) == [2, 2, 2], [t["containerInstanceArn"] for t in web0]
    daemon_on = {t["containerInstanceArn"]: t["taskArn"] for t in running(ecs, DAEMON)}

    a, b, c = instances
    # A standalone task on b: a drain leaves it alone, so it holds b's daemon task.
    started = aws("ecs", "start-task", "--cluster", CLUSTER, "--task-definition", "batch",
                  "--container-instances", b)
    assert started["failures"] == []
    batch = started["tasks"][0]["taskArn"]
    wait_for(lambda: describe_tasks(ecs, [batch])[0]["lastStatus"] == "RUNNING", timeout=60,
             what="the standalone task RUNNING")

    # 1. Drain a: its replica tasks move to b and c, then the daemon task goes.
    web_on_a = [t["taskArn"] for t in on(web0, a)]
    watch = DrainWatch(ecs, a, daemon_on[a], web_on_a)
    watch.poll()
    drain(aws, a)
    daemon, others = watch.until(lambda d, o: d["lastStatus"] == "STOPPED", 90, "a's daemon task to stop")
    assert watch.held >= 1, "never saw a's replica tasks unfinished while its daemon task ran"
    assert all(t["lastStatus"] == "STOPPED" for t in others)
    assert "DRAINING" in (daemon.get("stoppedReason") or ""), daemon.get("stoppedReason")
    # The server's own clock: the daemon task stopped after every replica task there.
    last_other = max(t["stoppedAt"] for t in others)
    assert daemon["stoppedAt"] > last_other, (daemon["stoppedAt"], last_other)
    assert daemon.get("stoppingAt", daemon["stoppedAt"]) >= last_other

    wait_for(lambda: steady(ecs, WEB, REPLICAS) and steady(ecs, DAEMON, 2), timeout=60,
             what="both services steady after the drain")
    web1 = running(ecs, WEB)
    assert on(web1, a) == []
    assert len({t["taskArn"] for t in web1} - {t["taskArn"] for t in web0}) == len(web_on_a), "replicas not replaced"
    assert sorted(t["containerInstanceArn"] for t in running(ecs, DAEMON)) == [b, c]
    svc = aws("ecs", "describe-services", "--cluster", CLUSTER, "--services", DAEMON)["services"][0]
    assert svc["desiredCount"] == 2, "the DAEMON service's desiredCount did not drop by one"
    ci = aws("ecs", "describe-container-instances", "--cluster", CLUSTER,
             "--container-instances", a)["containerInstances"][0]
    assert ci["status"] == "DRAINING" and ci["runningTasksCount"] == 0, ci

    # 2. Drain b: its replica tasks go to c; the standalone task keeps b's
    # daemon task RUNNING until it is stopped by hand.
    web_on_b = [t["taskArn"] for t in on(web1, b)]
    assert web_on_b
    watch = DrainWatch(ecs, b, daemon_on[b], web_on_b + [batch])
    watch.poll()
    drain(aws, b)
    watch.until(lambda d, o: all(t["lastStatus"] == "STOPPED" for t in o if t["taskArn"] != batch)
                and steady(ecs, WEB, REPLICAS) and not on(running(ecs, WEB), b), 90,
                "b's replica tasks stopped and replaced on c")
    # The standalone task still runs: ten or so controller passes change nothing.
    for _ in range(30):
        daemon, _ = watch.poll()
        assert not is_stopping(daemon), "b's daemon task stopped while the standalone task ran"
        time.sleep(POLL)
    held = watch.held
    r = aws("ecs", "stop-task", "--cluster", CLUSTER, "--task", batch, "--reason", "drain test")
    assert r["task"]["desiredStatus"] == "STOPPED"
    daemon, others = watch.until(lambda d, o: d["lastStatus"] == "STOPPED", 90, "b's daemon task to stop")
    assert held >= 30
    batch_task = next(t for t in others if t["taskArn"] == batch)
    assert daemon["stoppedAt"] > batch_task["stoppedAt"], (daemon["stoppedAt"], batch_task["stoppedAt"])
    assert daemon["stoppedAt"] > max(t["stoppedAt"] for t in others)

    wait_for(lambda: steady(ecs, DAEMON, 1) and steady(ecs, WEB, REPLICAS), timeout=60,
             what="both services steady after the second drain")
    assert [t["containerInstanceArn"] for t in running(ecs, DAEMON)] == [c]
    assert {t["containerInstanceArn"] for t in running(ecs, WEB)} == {c}
    svc = aws("ecs", "describe-services", "--cluster", CLUSTER, "--services", DAEMON)["services"][0]
    assert svc["desiredCount"] == 1, "the DAEMON service's desiredCount did not drop by one"
