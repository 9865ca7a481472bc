"""Berth against hostile and careless clients, over loopback: unsigned
floods that try to grow or forge /metrics, many big unsigned bodies at
once, slow-loris and idle connections, the connection cap, a second
channel opened for a container instance that has one, a forged state
change signed with another instance's own key, and a container reading
another task's metadata.

Every test is bounded in count and time; sizes and counts are kept small
enough that the whole file runs in well under a minute."""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import resource
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

import stat
import urllib.error
import urllib.request

import pytest

from berthlib import BUSYBOX as BB
from berthlib import http as bare_http
from berthlib import (REGION, ROOT_ACCESS_KEY_ID, ROOT_SECRET_ACCESS_KEY, BerthAgent, BerthServer,
                      assert_client_error, berth_binary, busybox_image, hermetic_env,
                      make_client, signed_post, wait_for)

# --------------------------------------------------------------------------
# helpers


def host_port(server) -> tuple[str, int]:
    host, port = server.address.rsplit(":", 1)
    return host, int(port)


def vm_kib(pid: int, field: str) -> int:
    """A `VmRSS`/`VmHWM` line of /proc/<pid>/status, in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


METRIC_LINE = re.compile(
    r'^[a-zA-Z_:][a-zA-Z0-9_:]*'
    r'(\{[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"(,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*")*\})?'
    r' \S+$'
)


def exposition_lines(text: str) -> list[str]:
    """The sample lines of an exposition, each checked against the text
    format's grammar (names, label pairs with escaped values, a value)."""
    samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        assert METRIC_LINE.match(line), f"not a valid sample line: {line!r}"
        samples.append(line)
    return samples


def server_log(server) -> str:
    return server.log_path.read_text(errors="replace")


def agent_process(server, tmp_path, name):
    """One `berth agent --runtime simulated` with one instance in cluster
    `hostile`; returns the process and its instance ARN."""
    env = hermetic_env()
    env.update(AWS_ACCESS_KEY_ID=ROOT_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY=ROOT_SECRET_ACCESS_KEY,
               RUST_LOG="info", NO_COLOR="1")
    return subprocess.Popen(
        [str(berth_binary()), "agent", "--server", server.endpoint, "--cluster", "hostile",
         "--runtime", "simulated", "--instances", "1", "--data-dir", str(tmp_path / name),
         "--poll-interval-ms", "300"],
        stdout=subprocess.DEVNULL, stderr=open(tmp_path / f"{name}.log", "a"), env=env, text=True)


class RawChannel:
    """An agent channel opened by hand: a SigV4-signed websocket upgrade of
    GET /ws on a plain socket, with just enough of RFC 6455 to read the
    control plane's frames and answer them."""

    def __init__(self, server, cluster_arn: str, instance_arn: str, answer_heartbeats: bool = True):
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        query = urllib.parse.urlencode({"clusterArn": cluster_arn, "containerInstanceArn": instance_arn})
        url = f"{server.endpoint}/ws?{query}"
        req = AWSRequest(method="GET", url=url, headers={})
        SigV4Auth(Credentials(ROOT_ACCESS_KEY_ID, ROOT_SECRET_ACCESS_KEY), "ecs", REGION).add_auth(req)
        prepared = req.prepare()
        split = urllib.parse.urlsplit(prepared.url)
        target = split.path + ("?" + split.query if split.query else "")
        headers = {k: v for k, v in prepared.headers.items() if k.lower() != "host"}
        lines = [f"GET {target} HTTP/1.1", f"Host: {server.address}", "Upgrade: websocket",
                 "Connection: Upgrade", "Sec-WebSocket-Version: 13",
                 "Sec-WebSocket-Key: " + base64.b64encode(os.urandom(16)).decode()]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        self.sock = socket.create_connection(host_port(server), timeout=30)
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            assert chunk, f"connection closed during the upgrade: {head!r}"
            head += chunk
        head, self.buf = head.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head
        self.frames: list[dict] = []
        self.closed = threading.Event()
        self.answer_heartbeats = answer_heartbeats
        self.lock = threading.Lock()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _recv_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _send(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            header = bytes([0x80 | opcode, 0x80 | n])
        elif n < 65536:
            header = bytes([0x80 | opcode, 0x80 | 126]) + n.to_bytes(2, "big")
        else:
            header = bytes([0x80 | opcode, 0x80 | 127]) + n.to_bytes(8, "big")
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        with self.lock:
            self.sock.sendall(header + mask + masked)

    def send_frame(self, kind: str, message_id: str) -> None:
        self._send(0x1, json.dumps({"type": kind, "message": {"messageId": message_id}}).encode())

    def _read(self) -> None:
        try:
            while True:
                b0, b1 = self._recv_exact(2)
                opcode, n = b0 & 0x0F, b1 & 0x7F
                if n == 126:
                    n = int.from_bytes(self._recv_exact(2), "big")
                elif n == 127:
                    n = int.from_bytes(self._recv_exact(8), "big")
                payload = self._recv_exact(n)
                if opcode == 0x8:
                    break
                if opcode == 0x9:
                    self._send(0xA, payload)
                    continue
                if opcode != 0x1:
                    continue
                frame = json.loads(payload)
                self.frames.append(frame)
                message_id = frame.get("message", {}).get("messageId")
                if frame["type"] == "PayloadMessage":
                    self.send_frame("AckRequest", message_id)
                elif frame["type"] == "HeartbeatMessage" and self.answer_heartbeats:
                    self.send_frame("HeartbeatAck", message_id)
        except (EOFError, OSError, ValueError):
            pass
        finally:
            self.closed.set()

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.reader.join(timeout=10)


def is_closed_by_server(sock: socket.socket) -> bool:
    """True once the server has closed `sock` (EOF or reset)."""
    sock.setblocking(False)
    try:
        data = sock.recv(65536)
        return data == b""
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        sock.setblocking(True)


# --------------------------------------------------------------------------
# /metrics


def test_unsigned_floods_cannot_grow_or_forge_metrics(berth_factory):
    server = berth_factory.start("metrics-flood")
    host, port = host_port(server)

    def flood(worker: int) -> None:
        for i in range(250):
            # A refused request's body is never read, so the server closes
            # the connection after answering: one connection per request.
            conn = http.client.HTTPConnection(host, port, timeout=10)
            n = f"{worker}-{i}"
            if i % 2:
                # A random JSON 1.1 target with a quote and braces in it.
                conn.request("POST", "/", body=b"{}", headers={
                    "Content-Type": "application/x-amz-json-1.1",
                    "X-Amz-Target": f'AmazonEC2ContainerServiceV20141113.Op{n}"}} 1 fake_series{{a="b'})
            else:
                # An STS action with a newline in it, in a form body.
                body = urllib.parse.urlencode({"Action": f'Op{n}"}} 1\nfake_series{{a="b', "Version": "2011-06-15"})
                conn.request("POST", "/", body=body.encode(),
                             headers={"Content-Type": "application/x-www-form-urlencoded"})
            resp = conn.getresponse()
            resp.read()
            assert resp.status in (400, 403), resp.status
            conn.close()

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(flood, range(8)))
    # A signed call of an operation no model has: counted, under "other".
    r = signed_post(server.endpoint, "AmazonEC2ContainerServiceV20141113.NoSuchThing", "{}")
    assert r.status_code == 400

    status, body = server.get("/metrics")
    assert status == 200
    text = body.decode()
    samples = exposition_lines(text)
    assert "fake_series" not in text
    requests = [s for s in samples if s.startswith("berth_api_requests_total{")]
    # 2000 requests with 2000 distinct targets: a handful of series.
    assert 0 < len(requests) <= 6, requests
    assert len(samples) < 200, len(samples)
    assert any('operation="unauthenticated"' in s and s.endswith(" 1000") for s in requests), requests
    assert any('operation="other"' in s for s in requests), requests


# --------------------------------------------------------------------------
# bodies before authentication


def test_many_big_unsigned_posts_are_refused_without_buffering(berth_factory):
    server = berth_factory.start("big-bodies")
    pid = server.proc.pid
    host, port = host_port(server)
    rss_before = vm_kib(pid, "VmRSS")
    size = 30 * 1024 * 1024
    chunk = b"A" * (1024 * 1024)

    def post(i: int) -> int:
        s = socket.create_connection((host, port), timeout=30)
        try:
            target = ("AmazonEC2ContainerRegistry_V20150921.UploadLayerPart" if i % 2
                      else "AmazonEC2ContainerServiceV20141113.RegisterTaskDefinition")
            s.sendall((f"POST / HTTP/1.1\r\nHost: {server.address}\r\n"
                       f"Content-Type: application/x-amz-json-1.1\r\nX-Amz-Target: {target}\r\n"
                       f"Content-Length: {size}\r\n\r\n").encode())
            sent = 0
            try:
                while sent < size:
                    s.sendall(chunk)
                    sent += len(chunk)
            except OSError:
                pass  # refused and closed before the body was sent: the point
            reply = b""
            try:
                while b"\r\n" not in reply:
                    data = s.recv(4096)
                    if not data:
                        break
                    reply += data
            except OSError:
                pass
            return int(reply.split()[1]) if reply.startswith(b"HTTP/1.1 ") else 0
        finally:
            s.close()

    with ThreadPoolExecutor(24) as pool:
        statuses = list(pool.map(post, range(24)))
    # Each is refused for its missing signature (when the reply got through
    # before the connection was torn down).
    assert all(s in (0, 403) for s in statuses), statuses
    assert any(s == 403 for s in statuses), statuses
    peak = vm_kib(pid, "VmHWM")
    # 24 x 30 MiB buffered would be 720 MiB; the head check reads none of it.
    grown_mib = (peak - rss_before) / 1024
    assert grown_mib < 150, f"server peak grew by {grown_mib:.0f} MiB over {rss_before // 1024} MiB"
    # The server still serves signed calls.
    r = signed_post(server.endpoint, "AmazonEC2ContainerServiceV20141113.ListClusters", "{}")
    assert r.status_code == 200, r.content


# --------------------------------------------------------------------------
# timeouts and the connection cap


def test_slow_loris_and_idle_connections_are_closed_while_signed_calls_work(berth_factory, tmp_path):
    server = berth_factory.start("loris", extra_args=[
        "--header-timeout-secs", "2", "--idle-timeout-secs", "2",
        "--agent-heartbeat-secs", "4", "--agent-timeout-secs", "30"])
    aws = server.aws(tmp_path / "cli")
    host, port = host_port(server)
    idle = [socket.create_connection((host, port), timeout=10) for _ in range(10)]
    loris = [socket.create_connection((host, port), timeout=10) for _ in range(10)]
    for s in loris:
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n")
    stop = threading.Event()

    def trickle():
        # One more header byte per socket every half second, forever.
        while not stop.is_set():
            for s in loris:
                try:
                    s.sendall(b"X")
                except OSError:
                    pass
            time.sleep(0.5)

    # A keep-alive connection that made one request and then says nothing.
    kept = socket.create_connection((host, port), timeout=10)
    kept.sendall(f"GET /healthz HTTP/1.1\r\nHost: {server.address}\r\n\r\n".encode())
    assert kept.recv(4096).startswith(b"HTTP/1.1 200")

    # An agent channel whose heartbeats come less often than the idle
    # timeout: it must not be cut.
    aws("ecs", "create-cluster", "--cluster-name", "hostile")
    ci = aws("ecs", "register-container-instance", "--cluster", "hostile")["containerInstance"]
    channel = RawChannel(server, ci["clusterArn"] if "clusterArn" in ci else
                         f"arn:aws:ecs:{REGION}:000000000000:cluster/hostile", ci["containerInstanceArn"])

    t = threading.Thread(target=trickle, daemon=True)
    t.start()
    try:
        # Signed calls keep working meanwhile.
        assert aws("ecs", "list-clusters")["clusterArns"]
        everything = idle + loris + [kept]
        wait_for(lambda: all(is_closed_by_server(s) for s in everything), timeout=20,
                 what="idle, slow-loris and kept-alive connections closed by the server")
        assert aws("ecs", "describe-clusters", "--clusters", "hostile")["clusters"][0]["status"] == "ACTIVE"
        # The channel outlived the idle timeout several times over and got
        # heartbeats all along.
        wait_for(lambda: sum(f["type"] == "HeartbeatMessage" for f in channel.frames) >= 2, timeout=20,
                 what="heartbeats on the channel")
        assert not channel.closed.is_set()
    finally:
        stop.set()
        channel.close()
        for s in idle + loris + [kept]:
            s.close()


def test_the_connection_cap_is_reached_and_released(berth_factory):
    cap = 8
    server = berth_factory.start("cap", extra_args=["--max-connections", str(cap)])
    host, port = host_port(server)
    held = [socket.create_connection((host, port), timeout=10) for _ in range(cap)]
    # Each is served (so it holds its slot): a request on it answers.
    for s in held:
        s.sendall(f"GET /healthz HTTP/1.1\r\nHost: {server.address}\r\n\r\n".encode())
        assert s.recv(4096).startswith(b"HTTP/1.1 200")
    result: dict = {}

    def call():
        r = signed_post(server.endpoint, "AmazonEC2ContainerServiceV20141113.ListClusters", "{}")
        result["status"] = r.status_code

    waiting = threading.Thread(target=call)
    waiting.start()
    wait_for(lambda: "connection limit reached" in server_log(server), timeout=10,
             what="the log line of the cap")
    assert "status" not in result, "a call went through past the cap"
    for s in held:
        s.close()
    waiting.join(timeout=15)
    assert result.get("status") == 200, result
    log = server_log(server)
    line = next(l for l in log.splitlines() if "connection limit reached" in l)
    assert f"max_connections={cap}" in line, line
    assert "connections below the limit again" in log


def test_the_cap_stays_below_the_open_file_limit(berth_factory):
    """With an open-file limit lower than --max-connections, the cap is
    lowered to fit (and says so), so floods meet the cap, never EMFILE."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (400, hard))
    try:
        server = berth_factory.start("nofile")  # inherits the lower limit
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    log = server_log(server)
    line = next(l for l in log.splitlines() if "open-file limit" in l)
    assert "open_file_limit=400" in line and "cap=144" in line, line
    host, port = host_port(server)
    held = []
    try:
        for _ in range(200):
            held.append(socket.create_connection((host, port), timeout=10))
        wait_for(lambda: "connection limit reached" in server_log(server), timeout=10,
                 what="the log line of the cap")
    finally:
        for s in held:
            s.close()
    r = signed_post(server.endpoint, "AmazonEC2ContainerServiceV20141113.ListClusters", "{}")
    assert r.status_code == 200, r.text
    assert "Too many open files" not in server_log(server)


# --------------------------------------------------------------------------
# one channel per container instance


def test_a_second_channel_replaces_the_first_and_liveness_follows_the_live_one(berth_factory, tmp_path):
    server = berth_factory.start("channels", extra_args=[
        "--agent-heartbeat-secs", "1", "--agent-timeout-secs", "3", "--service-interval-ms", "300"])
    aws = server.aws(tmp_path / "cli")
    cluster = aws("ecs", "create-cluster", "--cluster-name", "hostile")["cluster"]["clusterArn"]
    procs = []

    def instances() -> dict[str, bool]:
        arns = aws("ecs", "list-container-instances", "--cluster", "hostile")["containerInstanceArns"]
        if not arns:
            return {}
        cis = aws("ecs", "describe-container-instances", "--cluster", "hostile", "--container-instances", *arns)
        return {ci["containerInstanceArn"]: ci["agentConnected"] for ci in cis["containerInstances"]}

    def running_on() -> list[str]:
        arns = aws("ecs", "list-tasks", "--cluster", "hostile", "--service-name", "s")["taskArns"]
        ts = aws("ecs", "describe-tasks", "--cluster", "hostile", "--tasks", *arns)["tasks"] if arns else []
        return sorted(t["containerInstanceArn"] for t in ts if t["lastStatus"] == "RUNNING")

    channels: list[RawChannel] = []
    try:
        procs.append(agent_process(server, tmp_path, "a"))
        wait_for(lambda: len(instances()) == 1, timeout=30, what="agent a registered")
        victim = next(iter(instances()))
        procs.append(agent_process(server, tmp_path, "b"))
        wait_for(lambda: len(instances()) == 2, timeout=30, what="agent b registered")
        other = next(a for a in instances() if a != victim)
        aws("ecs", "register-task-definition", "--family", "s",
            "--container-definitions", '[{"name":"s","image":"sim/any:1","memory":64}]')
        aws("ecs", "create-service", "--cluster", "hostile", "--service-name", "s", "--task-definition", "s",
            "--desired-count", "2", "--placement-strategy", "type=spread,field=instanceId")
        wait_for(lambda: running_on() == sorted([victim, other]), timeout=60, what="one task on each agent")

        # A second channel for the victim's instance: the agent's own is
        # ended; the agent reconnects, and then the intruder's is ended.
        intruder = RawChannel(server, cluster, victim)
        channels.append(intruder)
        assert intruder.closed.wait(timeout=20), "the older channel was never closed"
        assert "a newer channel for the instance opened" in server_log(server)

        # The agent dies. Two channels are opened for its instance: the
        # older is closed at once, the newer keeps it connected while it
        # lives...
        os.kill(procs[0].pid, signal.SIGKILL)
        procs[0].wait(timeout=10)
        first = RawChannel(server, cluster, victim)
        channels.append(first)
        second = RawChannel(server, cluster, victim)
        channels.append(second)
        assert first.closed.wait(timeout=10), "the older of two channels was not closed"
        assert not second.closed.is_set()
        assert instances()[victim] is True
        # ...and when the newest dies, the instance is found lost and its
        # task replaced on the other agent.
        second.close()
        wait_for(lambda: instances()[victim] is False, timeout=20, what="the instance disconnected")
        wait_for(lambda: running_on().count(other) == 2, timeout=30, what="its task replaced on agent b")
    finally:
        for c in channels:
            c.close()
        for p in procs:
            if p.poll() is None:
                p.terminate()
                p.wait(timeout=30)


# --------------------------------------------------------------------------
# Agents as attackers: each container instance signs with its own key,
# issued at registration and kept 0600 by its agent, and that key acts only
# for its own instance and tasks. Root keys keep working for humans.

def _key(agent: BerthAgent) -> tuple[str, str]:
    path = agent.data_dir / "agent-credentials.json"
    mode = stat.S_IMODE(path.stat().st_mode)
    assert mode == 0o600, oct(mode)
    assert stat.S_IMODE(agent.data_dir.stat().st_mode) == 0o700
    doc = json.loads(path.read_text())
    return doc["accessKeyId"], doc["secretAccessKey"]


@pytest.fixture
def two_agents(berth, aws, tmp_path, unique):
    cluster = unique("keys")
    aws("ecs", "create-cluster", "--cluster-name", cluster)
    agents = []
    for name in ("a", "b"):
        agents.append(BerthAgent(berth.endpoint, tmp_path / name, tmp_path / f"{name}.log", "us-east-1a",
                                 cluster=cluster, extra_args=["--runtime", "simulated"]).start())
    yield cluster, agents
    for a in agents:
        a.stop()


def test_a_forged_state_change_with_another_instances_key_is_refused(berth, aws, two_agents):
    cluster, (a, b) = two_agents
    aws("ecs", "register-task-definition", "--family", "keys",
        "--container-definitions", '[{"name":"app","image":"sim/any:1","memory":64}]')
    task = aws("ecs", "start-task", "--cluster", cluster, "--task-definition", "keys",
               "--container-instances", b.arn)["tasks"][0]["taskArn"]

    def running():
        t = aws("ecs", "describe-tasks", "--cluster", cluster, "--tasks", task)["tasks"][0]
        return t["lastStatus"] == "RUNNING"
    wait_for(running, timeout=30, what="the task on b running")

    akid, secret = _key(a)
    as_a = make_client("ecs", berth.endpoint, akid, secret)
    # A's key cannot stop, re-bind or read b's task...
    assert_client_error(lambda: as_a.submit_task_state_change(
        cluster=cluster, task=task, status="STOPPED", reason="forged"), "AccessDeniedException", status=None)
    assert_client_error(lambda: as_a.submit_container_state_change(
        cluster=cluster, task=task, containerName="app", status="STOPPED", exitCode=1),
        "AccessDeniedException", status=None)
    assert_client_error(lambda: as_a.describe_tasks(cluster=cluster, tasks=[task]), "AccessDeniedException", status=None)
    assert_client_error(lambda: as_a.list_tasks(cluster=cluster, containerInstance=b.arn),
                        "AccessDeniedException", status=None)
    # ...nor act as an account.
    assert_client_error(lambda: as_a.create_cluster(clusterName="stolen"), "AccessDeniedException", status=None)
    assert_client_error(lambda: as_a.deregister_container_instance(
        cluster=cluster, containerInstance=b.arn, force=True), "AccessDeniedException", status=None)
    ecr_a = make_client("ecr", berth.endpoint, akid, secret)
    assert_client_error(lambda: ecr_a.describe_repositories(), "AccessDeniedException", status=None)
    # What its own agent needs still works: a registry token, which pulls
    # but does not push.
    repo = f"{cluster}-repo"
    aws("ecr", "create-repository", "--repository-name", repo)
    token = ecr_a.get_authorization_token()["authorizationData"][0]["authorizationToken"]
    basic = {"Authorization": f"Basic {token}"}
    assert bare_http().get(f"{berth.endpoint}/v2/{repo}/tags/list", headers=basic).status_code == 200
    push = bare_http().post(f"{berth.endpoint}/v2/{repo}/blobs/uploads/", headers=basic)
    assert push.status_code == 403 and push.json()["errors"][0]["code"] == "DENIED", push.text
    assert as_a.list_tasks(cluster=cluster, containerInstance=a.arn)["taskArns"] == []

    # The task was never touched.
    t = aws("ecs", "describe-tasks", "--cluster", cluster, "--tasks", task)["tasks"][0]
    assert t["lastStatus"] == "RUNNING" and t["desiredStatus"] == "RUNNING", t
    # Root keys keep working for humans.
    aws("ecs", "stop-task", "--cluster", cluster, "--task", task)


def test_deregistration_revokes_the_instances_key(berth, aws, two_agents):
    cluster, (a, _) = two_agents
    akid, secret = _key(a)
    as_a = make_client("ecs", berth.endpoint, akid, secret)
    as_a.list_tasks(cluster=cluster, containerInstance=a.arn)
    a.stop()
    aws("ecs", "deregister-container-instance", "--cluster", cluster, "--container-instance", a.arn,
        "--force")
    assert_client_error(lambda: as_a.list_tasks(cluster=cluster, containerInstance=a.arn),
                        "UnrecognizedClientException", status=None)


# --------------------------------------------------------------------------
# Task metadata: a container reads its own task, never another's.

# Reads its own task (until the agent has seen its container), then tries
# every route with another task's id as a container could compute it from
# that task's ARN, and with that task's real id (as if it had leaked),
# printing what wget says.
PRYING_SCRIPT = f"""
B={BB}
BASE="${{ECS_CONTAINER_METADATA_URI_V4%/*}}"
for i in $($B seq 1 240); do
  if $B wget -q -O /tmp/self.json "$ECS_CONTAINER_METADATA_URI_V4/task" \\
     && $B grep -q '"DockerId":"[0-9a-f]' /tmp/self.json; then
    break
  fi
  $B sleep 0.25
done
$B printf 'SELF %s\\n' "$($B cat /tmp/self.json)"
for id in "$OTHER_ID" "$LEAKED_ID"; do
  for p in "" /task /taskWithTags /stats /task/stats; do
    out=$($B wget -q -O /tmp/other.json "$BASE/$id$p" 2>&1)
    $B printf 'TRIED %s rc=%s %s\\n' "${{p:-/}}" "$?" "$out"
  done
done
$B printf 'DONE\\n'
exec $B sleep 600
"""


def unkeyed_endpoint_id(task_arn: str, container: str) -> str:
    """The endpoint id as it was derived before it was keyed: FNV-1a of the
    task ARN and the container name, known to anyone who knows the ARN."""
    h = 0xcbf29ce484222325
    for b in task_arn.encode() + b"\0" + container.encode():
        h ^= b
        h = (h * 0x100000001b3) % (1 << 64)
    task_id = task_arn.rsplit("/", 1)[1]
    return f"{task_id}-{h:016x}"


def docker_logs(container_id: str) -> str:
    return subprocess.run(["docker", "logs", container_id], capture_output=True, text=True).stdout


def test_a_container_cannot_read_another_task_s_metadata(tmp_path):
    image = busybox_image()
    server = BerthServer(tmp_path / "server", log_dir=tmp_path).start()
    ecs = server.client("ecs")
    ecs.create_cluster(clusterName="pry")
    # A fixed port, as in production (51679), so the restarted agent serves
    # the same URIs.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        metadata_port = probe.getsockname()[1]
    agent = BerthAgent(server.endpoint, tmp_path / "agent", tmp_path / "agent.log", "us-east-1a",
                       cluster="pry", extra_args=["--metadata-port", str(metadata_port)]).start()
    try:
        def running(arn):
            return wait_for(lambda: (t := ecs.describe_tasks(cluster="pry", tasks=[arn])["tasks"][0])
                            ["lastStatus"] == "RUNNING" and t, timeout=90, what=f"{arn} running")

        ecs.register_task_definition(family="victim", containerDefinitions=[{
            "name": "app", "image": image, "memory": 32, "stopTimeout": 1,
            "command": [BB, "sleep", "600"]}])
        victim = ecs.run_task(cluster="pry", taskDefinition="victim")["tasks"][0]["taskArn"]
        victim_id = running(victim)["containers"][0]["runtimeId"]

        env = dict(kv.split("=", 1) for kv in json.loads(subprocess.run(
            ["docker", "inspect", "--format", "{{json .Config.Env}}", victim_id],
            capture_output=True, text=True, check=True).stdout))
        uri = env["ECS_CONTAINER_METADATA_URI_V4"]
        ecs.register_task_definition(family="prying", containerDefinitions=[{
            "name": "app", "image": image, "memory": 32, "stopTimeout": 1,
            "environment": [{"name": "OTHER_ID", "value": unkeyed_endpoint_id(victim, "app")},
                            {"name": "LEAKED_ID", "value": uri.rsplit("/", 1)[1]}],
            "command": [BB, "sh", "-c", PRYING_SCRIPT]}])
        prying = ecs.run_task(cluster="pry", taskDefinition="prying")["tasks"][0]["taskArn"]
        prying_id = running(prying)["containers"][0]["runtimeId"]
        logs = wait_for(lambda: (out := docker_logs(prying_id)) and "DONE" in out and out, timeout=90,
                        what="the prying container to finish")

        own = json.loads(next(l for l in logs.splitlines() if l.startswith("SELF "))[5:])
        assert own["TaskARN"] == prying
        tried = [l for l in logs.splitlines() if l.startswith("TRIED ")]
        assert len(tried) == 10, logs
        for line in tried:
            assert "rc=1" in line and "404" in line, line
        assert victim not in logs

        # The victim's real id works from the host, and is not the one
        # derived from its ARN.
        assert not uri.endswith(unkeyed_endpoint_id(victim, "app"))
        with urllib.request.urlopen(uri + "/task", timeout=30) as resp:
            assert json.loads(resp.read())["TaskARN"] == victim

        # After an agent restart the ids the containers hold still answer.
        agent.stop()
        agent.start()
        wait_for(lambda: get_status(uri + "/task") == 200, timeout=60,
                 what="the restarted agent to serve the old id")
    finally:
        agent.stop()
        agent.remove_containers()
        server.kill()


def get_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code
    except OSError:
        return 0
