"""`berth agent` on the local Docker Engine, driven with the real aws CLI:
tasks really run, stop, report exit codes, and survive an agent restart.

The image is built here, from the static busybox of Debian's
`busybox-static` package (`docker import`), never pulled."""

import io
import os
import shutil
import signal
import subprocess
import tarfile
import time
import urllib.request
from pathlib import Path

import pytest

from berthlib import ROOT_ACCESS_KEY_ID, ROOT_SECRET_ACCESS_KEY, berth_binary, hermetic_env

IMAGE = "berth-e2e/busybox:latest"
BB = "/bin/busybox"


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="module")
def image():
    docker = shutil.which("docker")
    ok = docker and subprocess.run(["docker", "info"], capture_output=True).returncode == 0
    if not ok or not Path(BB).exists():
        if _in_ci():
            pytest.fail("docker and /bin/busybox (busybox-static) are required in CI")
        pytest.skip("docker or /bin/busybox missing")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(BB, arcname="bin/busybox")
        for d in ("etc", "tmp", "www"):
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            tar.addfile(info)
        page = b"hello from berth\n"
        info = tarfile.TarInfo("www/index.html")
        info.size = len(page)
        tar.addfile(info, io.BytesIO(page))
    subprocess.run(["docker", "import", "-", IMAGE], input=buf.getvalue(), check=True, capture_output=True)
    return IMAGE


class Agent:
    def __init__(self, endpoint: str, data_dir: Path, log: Path, zone: str):
        self.endpoint, self.data_dir, self.log, self.zone = endpoint, data_dir, log, zone
        self.proc = None
        self.arn = None

    def start(self):
        env = hermetic_env()
        env.update(AWS_ACCESS_KEY_ID=ROOT_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY=ROOT_SECRET_ACCESS_KEY,
                   RUST_LOG="info", NO_COLOR="1")
        self.proc = subprocess.Popen(
            [str(berth_binary()), "agent", "--server", self.endpoint, "--cluster", "default",
             "--data-dir", str(self.data_dir), "--availability-zone", self.zone,
             "--bind-ip", "127.0.0.1", "--poll-interval-ms", "300"],
            stdout=subprocess.PIPE, stderr=open(self.log, "a"), env=env, text=True)
        line = self.proc.stdout.readline()
        assert "registered as" in line, f"agent did not register: {line!r}\n{self.log.read_text()[-2000:]}"
        self.arn = line.strip().rsplit(" ", 1)[1]
        return self

    def stop(self, sig=signal.SIGKILL):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=10)


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
    subprocess.run("docker ps -aq --filter label=com.berth.cluster=default --filter label=com.berth.container-instance-arn="
                   f"{agent.arn} | xargs -r docker rm -f", shell=True, capture_output=True)
    server.kill()


def wait_for(fn, timeout=30.0, every=0.3):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"condition not met within {timeout}s; last value {last!r}")


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
