"""The agent and `berth up` as a careless user meets them: `berth up` names
the address in use and takes the agent's options; its log has no colour
codes and no secret; an agent started before its cluster waits for it; a
host port held outside Berth is reported and avoided. (A container prying
into another task's metadata is in test_hostile.py.)

Loopback only; every wait is bounded."""

import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from berthlib import BUSYBOX as BB
from berthlib import (ROOT_ACCESS_KEY_ID, ROOT_SECRET_ACCESS_KEY, BerthAgent, BerthServer,
                      berth_binary, busybox_image, hermetic_env, make_client, wait_for)

READY = re.compile(r"berth server listening on (http://\S+)")


def up_env() -> dict:
    """The environment of a user who runs `berth up` by hand: no fixed
    credentials (they are generated), colour not turned off."""
    env = hermetic_env()
    env.pop("NO_COLOR", None)
    env["RUST_LOG"] = "info"
    return env


def start_up(tmp_path: Path, *args, log: Path):
    """`berth up` on the simulated runtime with stdout and stderr in `log`,
    as scripts/quickstart runs it; returns the process and its endpoint."""
    out = open(log, "ab")
    try:
        proc = subprocess.Popen(
            [str(berth_binary()), "up", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "up"),
             "--runtime", "simulated", "--metadata-port", "0", *args],
            stdout=out, stderr=out, stdin=subprocess.DEVNULL, env=up_env())
    finally:
        out.close()

    def ready():
        assert proc.poll() is None, log.read_text(errors="replace")
        text = log.read_text(errors="replace")
        m = READY.search(text)
        return m and "berth agent registered" in text and m.group(1)

    endpoint = wait_for(ready, timeout=60, what="berth up to be ready")
    return proc, endpoint


def stop(proc) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def root_secret(credentials: Path) -> str:
    for line in credentials.read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "aws_secret_access_key":
            return value.strip()
    raise AssertionError(f"no secret in {credentials}")


def test_berth_up_logs_to_a_file_without_colour_or_secret(tmp_path):
    log = tmp_path / "server.log"
    proc, _ = start_up(tmp_path, log=log)
    try:
        secret = root_secret(tmp_path / "up" / "credentials")
        text = log.read_bytes()
        assert b"\x1b" not in text, "colour codes in a log file"
        assert secret.encode() not in text, "the root secret is in the log"
        # What to do instead is still said.
        assert f"AWS_SHARED_CREDENTIALS_FILE={tmp_path / 'up' / 'credentials'}" in text.decode()
    finally:
        stop(proc)


def test_berth_server_logs_to_a_file_without_colour(tmp_path):
    log = tmp_path / "server.log"
    out = open(log, "ab")
    proc = subprocess.Popen(
        [str(berth_binary()), "server", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "s")],
        stdout=subprocess.PIPE, stderr=out, stdin=subprocess.DEVNULL, env=up_env(), text=True)
    out.close()
    try:
        assert READY.search(proc.stdout.readline())
        secret = root_secret(tmp_path / "s" / "credentials")
        text = wait_for(lambda: (t := log.read_bytes()) and b"berth server ready" in t and t, timeout=30)
        assert b"\x1b" not in text
        assert secret.encode() not in text
    finally:
        stop(proc)


def test_berth_up_on_a_busy_port_names_the_address(tmp_path):
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen()
    address = "127.0.0.1:%d" % held.getsockname()[1]
    try:
        proc = subprocess.run(
            [str(berth_binary()), "up", "--listen", address, "--data-dir", str(tmp_path / "up"),
             "--runtime", "simulated", "--metadata-port", "0"],
            capture_output=True, text=True, timeout=60, env={**up_env(), "RUST_BACKTRACE": "0"})
    finally:
        held.close()
    assert proc.returncode != 0
    assert address in proc.stderr, proc.stderr
    assert "in use" in proc.stderr, proc.stderr
    assert "channel closed" not in proc.stderr


def test_berth_up_takes_the_agent_s_options(tmp_path):
    log = tmp_path / "up.log"
    port_range = "41150-41159"
    proc, endpoint = start_up(tmp_path, "--cluster", "mine", "--dynamic-host-port-range", port_range,
                              log=log)
    try:
        ak, sk = None, root_secret(tmp_path / "up" / "credentials")
        for line in (tmp_path / "up" / "credentials").read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "aws_access_key_id":
                ak = value.strip()
        ecs = make_client("ecs", endpoint, ak, sk)
        arns = ecs.list_container_instances(cluster="mine")["containerInstanceArns"]
        assert len(arns) == 1
        ci = ecs.describe_container_instances(cluster="mine", containerInstances=arns)["containerInstances"][0]
        attrs = {a["name"]: a.get("value") for a in ci["attributes"]}
        assert attrs["berth.dynamic-host-port-range"] == port_range
        # The metadata endpoint took a free port (0), not 51679.
        assert "uri=http://127.0.0.1:51679" not in log.read_text()
    finally:
        stop(proc)


def test_an_agent_started_before_its_cluster_waits_for_it(tmp_path):
    server = BerthServer(tmp_path / "server", log_dir=tmp_path).start()
    log = tmp_path / "agent.log"
    env = hermetic_env()
    env.update(AWS_ACCESS_KEY_ID=ROOT_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY=ROOT_SECRET_ACCESS_KEY,
               RUST_LOG="info", NO_COLOR="1", RUST_BACKTRACE="1")
    agent = subprocess.Popen(
        [str(berth_binary()), "agent", "--server", server.endpoint, "--cluster", "later",
         "--runtime", "simulated", "--data-dir", str(tmp_path / "agent"), "--metadata-port", "0",
         "--poll-interval-ms", "300"],
        stdout=subprocess.PIPE, stderr=open(log, "a"), env=env, text=True)
    try:
        wait_for(lambda: "does not exist yet" in log.read_text() or agent.poll() is not None,
                 timeout=30, what="the agent to say it waits")
        assert agent.poll() is None, log.read_text()
        text = log.read_text()
        assert "cluster=later" in text
        assert "panicked" not in text and "stack backtrace" not in text
        # Let it retry a few times (1 s, then 2 s) before the cluster appears.
        time.sleep(4)
        assert agent.poll() is None, log.read_text()
        ecs = server.client("ecs")
        ecs.create_cluster(clusterName="later")
        line = agent.stdout.readline()
        assert "registered as" in line, line + log.read_text()
        arn = line.strip().rsplit(" ", 1)[1]
        assert ecs.list_container_instances(cluster="later")["containerInstanceArns"] == [arn]
        # One line said it, however many retries there were.
        assert log.read_text().count("does not exist yet") == 1
    finally:
        agent.send_signal(signal.SIGKILL)
        agent.wait(timeout=10)
        server.kill()


# --------------------------------------------------------------------------
# Dynamic host ports held by something else on the host (here a plain
# socket, as the task scripts/quickstart leaves on 49153 is to the suite).

def hold_port(port: int) -> socket.socket:
    s = socket.socket()
    s.bind(("127.0.0.1", port))
    s.listen()
    return s


def free_range(n: int) -> int:
    """The first of `n` consecutive ports nothing listens on, between 41300
    and 42000."""
    for first in range(41300, 42000, n):
        held = []
        try:
            for p in range(first, first + n):
                held.append(hold_port(p))
            return first
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise AssertionError("no free port range")


def web_service(ecs, image, cluster, name, count):
    ecs.register_task_definition(family=name, containerDefinitions=[{
        "name": "w", "image": image, "memory": 16, "stopTimeout": 1,
        "command": [BB, "httpd", "-f", "-p", "8080", "-h", "/www"],
        "portMappings": [{"containerPort": 8080, "hostPort": 0}]}])
    ecs.create_service(cluster=cluster, serviceName=name, taskDefinition=name, desiredCount=count)


def running_ports(ecs, cluster, service, count):
    """The host ports of the service's tasks once `count` of them run."""
    def ports():
        arns = ecs.list_tasks(cluster=cluster, serviceName=service, desiredStatus="RUNNING")["taskArns"]
        if len(arns) != count:
            return None
        tasks = ecs.describe_tasks(cluster=cluster, tasks=arns)["tasks"]
        if any(t["lastStatus"] != "RUNNING" for t in tasks):
            return None
        return sorted(t["containers"][0]["networkBindings"][0]["hostPort"] for t in tasks)
    return wait_for(ports, timeout=120, interval=0.5, what=f"{count} tasks of {service} running")


def stopped_reasons(ecs, cluster, service):
    arns = ecs.list_tasks(cluster=cluster, serviceName=service, desiredStatus="STOPPED")["taskArns"]
    if not arns:
        return []
    return [t.get("stoppedReason", "") for t in ecs.describe_tasks(cluster=cluster, tasks=arns)["tasks"]]


def registered_ports(ecs, cluster, arn):
    ci = ecs.describe_container_instances(cluster=cluster, containerInstances=[arn])["containerInstances"][0]
    return next(r["stringSetValue"] for r in ci["registeredResources"] if r["name"] == "PORTS")


def test_a_port_held_before_the_agent_starts_is_never_offered(tmp_path):
    image = busybox_image()
    first = free_range(3)
    held = hold_port(first)
    server = BerthServer(tmp_path / "server", log_dir=tmp_path).start()
    ecs = server.client("ecs")
    ecs.create_cluster(clusterName="held")
    agent = BerthAgent(server.endpoint, tmp_path / "agent", tmp_path / "agent.log", "us-east-1a",
                       cluster="held",
                       extra_args=["--dynamic-host-port-range", f"{first}-{first + 2}"]).start()
    try:
        assert str(first) in registered_ports(ecs, "held", agent.arn)
        web_service(ecs, image, "held", "web", 2)
        assert running_ports(ecs, "held", "web", 2) == [first + 1, first + 2]
        body = urllib.request.urlopen(f"http://127.0.0.1:{first + 1}/", timeout=10).read()
        assert b"hello from berth" in body
    finally:
        agent.stop()
        agent.remove_containers()
        server.kill()
        held.close()


def test_a_port_taken_after_registration_is_given_up_and_the_task_replaced(tmp_path):
    image = busybox_image()
    first = free_range(3)
    server = BerthServer(tmp_path / "server", log_dir=tmp_path).start()
    ecs = server.client("ecs")
    ecs.create_cluster(clusterName="late")
    agent = BerthAgent(server.endpoint, tmp_path / "agent", tmp_path / "agent.log", "us-east-1a",
                       cluster="late",
                       extra_args=["--dynamic-host-port-range", f"{first}-{first + 2}"]).start()
    # Taken once the agent has registered: placement may still choose it.
    held = hold_port(first)
    try:
        web_service(ecs, image, "late", "web", 2)
        assert running_ports(ecs, "late", "web", 2) == [first + 1, first + 2]
        wait_for(lambda: str(first) in registered_ports(ecs, "late", agent.arn), timeout=30,
                 what="the agent to report the held port")
        # A task placed on the held port, if any, says why it stopped.
        for reason in stopped_reasons(ecs, "late", "web"):
            assert f"host port {first} already in use" in reason, reason

        # Released, the port is offered again once the agent looks.
        held.close()
        wait_for(lambda: str(first) not in registered_ports(ecs, "late", agent.arn), timeout=30,
                 what="the agent to offer the released port again")
    finally:
        held.close()
        agent.stop()
        agent.remove_containers()
        server.kill()
