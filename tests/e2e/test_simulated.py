"""Many simulated container instances in one `berth agent` process: the
scale-test mode. They register, heartbeat over their channels, take tasks
and report them RUNNING without Docker, and say they are simulated. On
simulated instances, with the aws CLI: stopped tasks deleted after their
retention, a frozen agent found lost by its silence, and the tags a task
gets from its service, its task definition and ECS."""

import os
import signal
import subprocess
import time

from berthlib import (ROOT_ACCESS_KEY_ID, ROOT_SECRET_ACCESS_KEY, BerthServer, berth_binary,
                      hermetic_env, wait_for)

INSTANCES = 20


def start_server(tmp_path, *extra_args):
    """A server on a fresh data dir with cluster `sim`, and its aws CLI."""
    server = BerthServer(tmp_path / "server", log_dir=tmp_path, extra_args=list(extra_args)).start()
    aws = server.aws(tmp_path / "cli")
    aws("ecs", "create-cluster", "--cluster-name", "sim")
    return server, aws


def start_agent(server, tmp_path, name, instances, poll_ms=300, stdout=subprocess.PIPE):
    """One `berth agent --runtime simulated` process with `instances`
    instances in cluster `sim`, logging to <tmp>/<name>.log."""
    env = hermetic_env()
    env.update(AWS_ACCESS_KEY_ID=ROOT_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY=ROOT_SECRET_ACCESS_KEY, RUST_LOG="info")
    return subprocess.Popen(
        [str(berth_binary()), "agent", "--server", server.endpoint, "--cluster", "sim",
         "--runtime", "simulated", "--instances", str(instances), "--data-dir", str(tmp_path / name),
         "--poll-interval-ms", str(poll_ms)],
        stdout=stdout, stderr=open(tmp_path / f"{name}.log", "a"), env=env, text=True)


def test_many_simulated_instances_in_one_process(tmp_path):
    server, aws = start_server(tmp_path, "--agent-heartbeat-secs", "1", "--agent-timeout-secs", "5")
    agent = start_agent(server, tmp_path, "agents", INSTANCES, poll_ms=500)
    try:
        line = agent.stdout.readline()
        assert f"registered {INSTANCES} simulated instances" in line, line
        arns = aws("ecs", "list-container-instances", "--cluster", "sim")["containerInstanceArns"]
        assert len(arns) == INSTANCES
        described = aws("ecs", "describe-container-instances", "--cluster", "sim",
                        "--container-instances", *arns)["containerInstances"]
        for ci in described:
            attrs = {a["name"]: a.get("value") for a in ci["attributes"]}
            assert attrs.get("berth.runtime") == "simulated"
        # Heartbeats keep all of them connected past the timeout.
        time.sleep(7)
        described = aws("ecs", "describe-container-instances", "--cluster", "sim",
                        "--container-instances", *arns)["containerInstances"]
        assert all(ci["agentConnected"] for ci in described)

        aws("ecs", "register-task-definition", "--family", "sim",
            "--container-definitions", '[{"name":"s","image":"sim/any:1","memory":64}]')
        out = aws("ecs", "run-task", "--cluster", "sim", "--task-definition", "sim", "--count", "10",
                  "--placement-strategy", "type=spread,field=instanceId")
        assert out["failures"] == []
        task_arns = [t["taskArn"] for t in out["tasks"]]
        assert len({t["containerInstanceArn"] for t in out["tasks"]}) == 10

        def all_running():
            ts = aws("ecs", "describe-tasks", "--cluster", "sim", "--tasks", *task_arns)["tasks"]
            return all(t["lastStatus"] == "RUNNING" for t in ts)

        wait_for(all_running, timeout=60)
    finally:
        agent.terminate()
        agent.wait(timeout=30)
        server.kill()


def test_stopped_tasks_are_deleted_after_their_retention(tmp_path):
    """A STOPPED task stays visible for the retention period (ECS: at least
    an hour; 3 s here), then DescribeTasks reports it MISSING and ListTasks
    no longer lists it; a running task is left alone."""
    server, aws = start_server(tmp_path, "--stopped-task-retention-secs", "3")
    agent = start_agent(server, tmp_path, "agents", 2)
    try:
        assert "simulated instances" in agent.stdout.readline()
        aws("ecs", "register-task-definition", "--family", "sim",
            "--container-definitions", '[{"name":"s","image":"sim/any:1","memory":64}]')
        tasks = aws("ecs", "run-task", "--cluster", "sim", "--task-definition", "sim", "--count", "2")["tasks"]
        gone, kept = tasks[0]["taskArn"], tasks[1]["taskArn"]

        def statuses():
            out = aws("ecs", "describe-tasks", "--cluster", "sim", "--tasks", gone, kept)
            return {t["taskArn"]: t["lastStatus"] for t in out["tasks"]}, out["failures"]

        wait_for(lambda: set(statuses()[0].values()) == {"RUNNING"}, timeout=60, what="both RUNNING")
        aws("ecs", "stop-task", "--cluster", "sim", "--task", gone)
        wait_for(lambda: statuses()[0].get(gone) == "STOPPED", timeout=30, what="the stopped task STOPPED")
        stopped_seen = time.monotonic()
        assert gone in aws("ecs", "list-tasks", "--cluster", "sim", "--desired-status", "STOPPED")["taskArns"]
        wait_for(lambda: gone not in statuses()[0], timeout=30, what="the stopped task deleted")
        assert time.monotonic() - stopped_seen >= 1.0, "kept for (about) its retention first"
        found, failures = statuses()
        assert found == {kept: "RUNNING"}
        assert failures == [{"arn": gone, "reason": "MISSING"}]
        assert aws("ecs", "list-tasks", "--cluster", "sim", "--desired-status", "STOPPED")["taskArns"] == []
    finally:
        agent.terminate()
        agent.wait(timeout=30)
        server.kill()


def test_a_silent_agent_with_its_connection_open_is_found_lost(tmp_path):
    """SIGSTOP freezes an agent with its TCP connection still open (the
    kernel keeps acknowledging): a partition that does not drop the
    connection. The server must find it lost by its silence within the
    timeout and replace its service task elsewhere; after SIGCONT the agent
    comes back and the replaced task is stopped."""
    server, aws = start_server(tmp_path, "--agent-heartbeat-secs", "1", "--agent-timeout-secs", "3",
                               "--service-interval-ms", "300")
    agents = []

    def start(name):
        agents.append(start_agent(server, tmp_path, name, 1, stdout=subprocess.DEVNULL))

    def instances():
        arns = aws("ecs", "list-container-instances", "--cluster", "sim")["containerInstanceArns"]
        if not arns:
            return {}
        cis = aws("ecs", "describe-container-instances", "--cluster", "sim", "--container-instances", *arns)
        return {ci["containerInstanceArn"]: ci["agentConnected"] for ci in cis["containerInstances"]}

    def running_on():
        arns = aws("ecs", "list-tasks", "--cluster", "sim", "--service-name", "s")["taskArns"]
        ts = aws("ecs", "describe-tasks", "--cluster", "sim", "--tasks", *arns)["tasks"] if arns else []
        return sorted(t["containerInstanceArn"] for t in ts if t["lastStatus"] == "RUNNING")

    try:
        start("a")
        wait_for(lambda: len(instances()) == 1, timeout=30, what="agent a registered")
        frozen = next(iter(instances()))
        start("b")
        wait_for(lambda: len(instances()) == 2, timeout=30, what="agent b registered")
        other = next(a for a in instances() if a != frozen)
        aws("ecs", "register-task-definition", "--family", "s",
            "--container-definitions", '[{"name":"s","image":"sim/any:1","memory":64}]')
        aws("ecs", "create-service", "--cluster", "sim", "--service-name", "s", "--task-definition", "s",
            "--desired-count", "2", "--placement-strategy", "type=spread,field=instanceId")
        wait_for(lambda: running_on() == sorted([frozen, other]), timeout=60, what="one task on each agent")

        os.kill(agents[0].pid, signal.SIGSTOP)
        frozen_at = time.monotonic()
        wait_for(lambda: instances()[frozen] is False, timeout=30, what="the frozen agent found lost")
        lost_after = time.monotonic() - frozen_at
        assert lost_after < 15, f"found lost only after {lost_after:.1f}s"
        wait_for(lambda: running_on().count(other) == 2, timeout=30, what="its task replaced on the other agent")

        os.kill(agents[0].pid, signal.SIGCONT)
        wait_for(lambda: instances()[frozen] is True, timeout=30, what="the agent back")
        wait_for(lambda: running_on() == [other, other], timeout=60, what="the replaced task stopped")
        svc = aws("ecs", "describe-services", "--cluster", "sim", "--services", "s")["services"][0]
        assert svc["runningCount"] == 2
    finally:
        for p in agents:
            try:
                os.kill(p.pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
            p.terminate()
            p.wait(timeout=30)
        server.kill()


def test_service_tasks_get_propagated_and_managed_tags(tmp_path):
    """propagateTags SERVICE gives a service's tasks the service's tags,
    TASK_DEFINITION the task definition's; enableECSManagedTags adds
    aws:ecs:clusterName and aws:ecs:serviceName; NONE gives nothing. RunTask
    takes TASK_DEFINITION and the managed tag too, and refuses SERVICE."""
    server, aws = start_server(tmp_path, "--service-interval-ms", "300")
    agent = start_agent(server, tmp_path, "agents", 2)

    def task_tags(service):
        arns = aws("ecs", "list-tasks", "--cluster", "sim", "--service-name", service)["taskArns"]
        if not arns:
            return None
        ts = aws("ecs", "describe-tasks", "--cluster", "sim", "--tasks", *arns, "--include", "TAGS")["tasks"]
        return [{t["key"]: t["value"] for t in task.get("tags", [])} for task in ts]

    try:
        assert "simulated instances" in agent.stdout.readline()
        aws("ecs", "register-task-definition", "--family", "tagged", "--tags", "key=from,value=taskdef",
            "--container-definitions", '[{"name":"s","image":"sim/any:1","memory":64}]')
        aws("ecs", "create-service", "--cluster", "sim", "--service-name", "by-service", "--task-definition",
            "tagged", "--desired-count", "2", "--propagate-tags", "SERVICE", "--enable-ecs-managed-tags",
            "--tags", "key=team,value=blue")
        aws("ecs", "create-service", "--cluster", "sim", "--service-name", "by-taskdef", "--task-definition",
            "tagged", "--desired-count", "1", "--propagate-tags", "TASK_DEFINITION")
        aws("ecs", "create-service", "--cluster", "sim", "--service-name", "none", "--task-definition",
            "tagged", "--desired-count", "1")
        want = {"team": "blue", "aws:ecs:clusterName": "sim", "aws:ecs:serviceName": "by-service"}
        assert wait_for(lambda: task_tags("by-service"), timeout=30, what="by-service tasks") == [want, want]
        assert wait_for(lambda: task_tags("by-taskdef"), timeout=30, what="by-taskdef task") == [{"from": "taskdef"}]
        assert wait_for(lambda: task_tags("none"), timeout=30, what="untagged task") == [{}]

        # RunTask: the task definition's tags under the request's own, and
        # the managed cluster tag; SERVICE is refused.
        arn = aws("ecs", "run-task", "--cluster", "sim", "--task-definition", "tagged", "--propagate-tags",
                  "TASK_DEFINITION", "--enable-ecs-managed-tags", "--tags", "key=from,value=request",
                  "key=extra,value=1")["tasks"][0]["taskArn"]
        t = aws("ecs", "describe-tasks", "--cluster", "sim", "--tasks", arn, "--include", "TAGS")["tasks"][0]
        assert {x["key"]: x["value"] for x in t["tags"]} == {"from": "request", "extra": "1",
                                                              "aws:ecs:clusterName": "sim"}
        r = aws.run("ecs", "run-task", "--cluster", "sim", "--task-definition", "tagged",
                    "--propagate-tags", "SERVICE")
        assert r.returncode != 0 and "InvalidParameterException" in r.stderr, r.stderr
    finally:
        agent.terminate()
        agent.wait(timeout=30)
        server.kill()
