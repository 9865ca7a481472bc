"""Helpers of the end-to-end suite: start and stop a real `berth server`,
run the real `aws` CLI against it, build boto3 clients, compare documents.

Nothing here fakes the server: every helper talks to a `berth` process over
HTTP on 127.0.0.1, the way a user would.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

try:  # boto3 is required; conftest turns its absence into a skip or a failure.
    import boto3
    import botocore
    from botocore.config import Config
    from botocore.exceptions import ClientError
except ImportError:  # pragma: no cover - reported by conftest
    boto3 = None
    botocore = None
    Config = None

    class ClientError(Exception):  # type: ignore[no-redef]
        pass


REGION = "us-east-1"
ACCOUNT_ID = "000000000000"
ROOT_ARN = f"arn:aws:iam::{ACCOUNT_ID}:root"
# Fixed root credentials handed to the session server through the environment.
# The secret has '/' and '+' on purpose: SigV4 must not care.
ROOT_ACCESS_KEY_ID = "AKIAE2EBERTHROOT0001"
ROOT_SECRET_ACCESS_KEY = "e2e/Berth+Root+Secret/0123456789abcdefABCD"

ECS_TARGET_PREFIX = "AmazonEC2ContainerServiceV20141113."
JSON_CONTENT_TYPE = "application/x-amz-json-1.1"

READY_LINE = re.compile(r"berth server listening on http://(\S+)")
STARTUP_TIMEOUT = 30.0


def cluster_arn(name: str, region: str = REGION, account: str = ACCOUNT_ID) -> str:
    return f"arn:aws:ecs:{region}:{account}:cluster/{name}"


def task_definition_arn(family: str, revision: int) -> str:
    return f"arn:aws:ecs:{REGION}:{ACCOUNT_ID}:task-definition/{family}:{revision}"


def berth_binary() -> Path:
    """The binary under test: $BERTH_BIN, else the debug build."""
    if os.environ.get("BERTH_BIN"):
        return Path(os.environ["BERTH_BIN"])
    target = os.environ.get("CARGO_TARGET_DIR") or str(Path(__file__).resolve().parents[2] / "target")
    return Path(target) / "debug" / "berth"


def hermetic_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The process environment with every setting that could steer the aws
    CLI, botocore or berth elsewhere removed, and proxies bypassed for the
    loopback address."""
    env = dict(os.environ if base is None else base)
    for k in list(env):
        if k.startswith(("AWS_", "BERTH_")) and k != "AWS_CA_BUNDLE":
            del env[k]
        if k.lower() in ("http_proxy", "https_proxy", "all_proxy"):
            del env[k]
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    env["AWS_MAX_ATTEMPTS"] = "1"
    env["AWS_RETRY_MODE"] = "standard"
    env["AWS_PAGER"] = ""
    return env


# --------------------------------------------------------------------------
# The server process


class BerthServer:
    """One `berth server` process on a port the kernel picks."""

    def __init__(
        self,
        data_dir: Path,
        *,
        credentials: tuple[str, str] | None = (ROOT_ACCESS_KEY_ID, ROOT_SECRET_ACCESS_KEY),
        region: str = REGION,
        account_id: str = ACCOUNT_ID,
        log_dir: Path | None = None,
        config_from_env: bool = False,
        extra_args: list[str] | tuple[str, ...] = ("--agent-timeout-secs", "86400"),
        listen: str = "127.0.0.1:0",
    ):
        # Agents registered by hand through the API never open a channel:
        # unless a test asks for it, give them a day before they count as
        # disconnected.
        self.extra_args = list(extra_args)
        self.listen = listen
        self.data_dir = Path(data_dir)
        self.credentials = credentials
        self.region = region
        self.account_id = account_id
        self.log_dir = Path(log_dir) if log_dir else self.data_dir.parent
        # Configure through BERTH_LISTEN & co. instead of flags.
        self.config_from_env = config_from_env
        self.proc: subprocess.Popen | None = None
        self.address: str | None = None
        self.log_path: Path | None = None
        self._starts = 0

    # -- lifecycle -------------------------------------------------------

    def start(self) -> "BerthServer":
        binary = berth_binary()
        if not binary.exists():
            raise RuntimeError(
                f"berth binary not found at {binary}; build it with `cargo build -p berth` "
                "or point BERTH_BIN at it"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._starts += 1
        self.address = None
        self.log_path = self.log_dir / f"berth-{self.data_dir.name}-{self._starts}.log"
        env = hermetic_env()
        env.setdefault("RUST_LOG", "info")
        env["NO_COLOR"] = "1"
        if self.credentials is not None:
            env["BERTH_ROOT_ACCESS_KEY_ID"], env["BERTH_ROOT_SECRET_ACCESS_KEY"] = self.credentials
        settings = {
            "listen": self.listen,
            "data-dir": str(self.data_dir),
            "region": self.region,
            "account-id": self.account_id,
        }
        cmd = [str(binary), "server"]
        for name, value in settings.items():
            if self.config_from_env:
                env["BERTH_" + name.upper().replace("-", "_")] = value
            else:
                cmd += [f"--{name}", value]
        cmd += self.extra_args
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                cmd, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, env=env
            )
        finally:
            log.close()
        lines: "queue.Queue[bytes | None]" = queue.Queue()

        def pump(stream):
            for line in iter(stream.readline, b""):
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, args=(self.proc.stdout,), daemon=True).start()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        stdout_seen: list[str] = []
        while self.address is None:
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                raise RuntimeError(f"berth server did not print its ready line; stdout={stdout_seen!r}\n{self.log_tail()}")
            try:
                line = lines.get(timeout=min(left, 0.5))
            except queue.Empty:
                continue
            if line is None:
                rc = self.proc.wait()
                raise RuntimeError(f"berth server exited with {rc} before it was ready\n{self.log_tail()}")
            text = line.decode(errors="replace")
            stdout_seen.append(text)
            m = READY_LINE.search(text)
            if m:
                self.address = m.group(1)
        # The ready line says the socket is bound; /healthz says it serves.
        while True:
            try:
                if self.get("/healthz", timeout=2)[1].strip() == b"ok":
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"/healthz never answered ok\n{self.log_tail()}")
            time.sleep(0.05)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Asks the server to shut down (SIGINT, as Ctrl-C), then kills it."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def kill(self) -> None:
        """kill -9: no chance to flush or close anything."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def log_tail(self, n: int = 40) -> str:
        if not self.log_path or not self.log_path.exists():
            return "(no server log)"
        lines = self.log_path.read_text(errors="replace").splitlines()
        return "server log tail:\n" + "\n".join(lines[-n:])

    # -- access ------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        assert self.address, "server not started"
        return f"http://{self.address}"

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        req = urllib.request.Request(self.endpoint + path, method="GET")
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(req, timeout=timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def client(self, service: str = "ecs", credentials: tuple[str, str] | None = None, **config):
        ak, sk = credentials or self.credentials or (None, None)
        return make_client(service, self.endpoint, ak, sk, region=self.region, **config)

    def aws(self, tmp_dir: Path, credentials: tuple[str, str] | None = None) -> "AwsCli":
        ak, sk = credentials or self.credentials or (None, None)
        return AwsCli(self.endpoint, self.region, ak, sk, tmp_dir)


def make_client(service, endpoint, access_key, secret_key, region=REGION, **config):
    cfg = Config(
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=config.pop("connect_timeout", 5),
        read_timeout=config.pop("read_timeout", 30),
        proxies={},
        **config,
    )
    session = boto3.session.Session(
        aws_access_key_id=access_key, aws_secret_access_key=secret_key, region_name=region
    )
    return session.client(service, endpoint_url=endpoint, config=cfg)


# --------------------------------------------------------------------------
# The aws CLI

CLI_ERROR = re.compile(r"An error occurred \(([^)]+)\) when calling the (\w+) operation(?: \([^)]*\))?: (.*)", re.S)


@dataclass
class CliResult:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def json(self) -> Any:
        return json.loads(self.stdout) if self.stdout.strip() else {}


@dataclass
class CliError:
    """A failed aws CLI call, as the CLI reports it on stderr."""

    returncode: int
    stderr: str
    code: str | None = None
    operation: str | None = None
    message: str | None = None


class AwsCli:
    """Runs the real `aws` CLI (a subprocess) against one endpoint, with the
    credentials in the environment and no user configuration in reach."""

    def __init__(self, endpoint: str, region: str, access_key: str | None, secret_key: str | None, tmp_dir: Path):
        self.endpoint = endpoint
        self.region = region
        self.tmp_dir = Path(tmp_dir)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        empty = self.tmp_dir / "aws-empty-config"
        empty.touch()
        env = hermetic_env()
        env["AWS_CONFIG_FILE"] = str(empty)
        env["AWS_SHARED_CREDENTIALS_FILE"] = str(empty)
        if access_key is not None:
            env["AWS_ACCESS_KEY_ID"] = access_key
            env["AWS_SECRET_ACCESS_KEY"] = secret_key
        self.env = env

    def run(self, *args: Any, env: dict[str, str] | None = None, timeout: float = 90) -> CliResult:
        argv = [
            "aws", "--endpoint-url", self.endpoint, "--region", self.region, "--output", "json",
            *[str(a) for a in args],
        ]
        proc = subprocess.run(
            argv, capture_output=True, text=True, env={**self.env, **(env or {})},
            timeout=timeout, stdin=subprocess.DEVNULL,
        )
        return CliResult(argv, proc.returncode, proc.stdout, proc.stderr)

    def __call__(self, *args: Any, **kw) -> Any:
        """Runs a command that must succeed; returns its parsed JSON output."""
        r = self.run(*args, **kw)
        assert r.returncode == 0, f"aws {' '.join(r.args[7:])} failed ({r.returncode}):\n{r.stderr}"
        return r.json

    def fail(self, *args: Any, **kw) -> CliError:
        """Runs a command that must fail with an AWS error; returns the error."""
        r = self.run(*args, **kw)
        assert r.returncode != 0, f"aws {' '.join(r.args[7:])} unexpectedly succeeded:\n{r.stdout}"
        err = CliError(r.returncode, r.stderr)
        m = CLI_ERROR.search(r.stderr)
        if m:
            err.code, err.operation, err.message = m.group(1), m.group(2), m.group(3).strip()
        return err

    def parallel(self, *commands: list[Any]) -> list[Any]:
        """Runs independent successful commands at once (the CLI starts slowly)."""
        with ThreadPoolExecutor(max_workers=len(commands)) as pool:
            return list(pool.map(lambda c: self(*c), commands))


# --------------------------------------------------------------------------
# Raw HTTP


@dataclass
class HttpResponse:
    status_code: int
    headers: Any  # case-insensitive, as http.client gives them
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.content)


class Http:
    """A bare HTTP client (urllib, no proxies) for requests that botocore
    would never send: unsigned, tampered, malformed."""

    def __init__(self):
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def request(self, method, url, data=None, headers=None, timeout=10) -> HttpResponse:
        if isinstance(data, str):
            data = data.encode()
        req = urllib.request.Request(url, data=data, headers=dict(headers or {}), method=method)
        try:
            with self._opener.open(req, timeout=timeout) as resp:
                return HttpResponse(resp.status, resp.headers, resp.read())
        except urllib.error.HTTPError as e:
            return HttpResponse(e.code, e.headers, e.read())

    def get(self, url, **kw) -> HttpResponse:
        return self.request("GET", url, **kw)

    def post(self, url, **kw) -> HttpResponse:
        return self.request("POST", url, **kw)


def http() -> Http:
    return Http()


def signed_post(endpoint, target, body, *, credentials=(ROOT_ACCESS_KEY_ID, ROOT_SECRET_ACCESS_KEY),
                service="ecs", region=REGION, skew=None, monkeypatch=None):
    """POSTs `body` with `X-Amz-Target: target`, signed by botocore's own
    SigV4 signer; `skew` shifts the signing clock."""
    import botocore.auth
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    headers = {"Content-Type": JSON_CONTENT_TYPE}
    if target is not None:
        headers["X-Amz-Target"] = target
    req = AWSRequest(method="POST", url=endpoint + "/", data=body, headers=headers)
    if skew is not None:
        real = botocore.auth.get_current_datetime
        monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *a, **k: real(*a, **k) + skew)
    try:
        SigV4Auth(Credentials(*credentials), service, region).add_auth(req)
    finally:
        if skew is not None:
            monkeypatch.undo()
    prepared = req.prepare()
    return http().post(prepared.url, data=prepared.body, headers=dict(prepared.headers), timeout=10)


# --------------------------------------------------------------------------
# Assertions


def assert_client_error(call: Callable[[], Any], code: str | tuple[str, ...], status: int | None = 400) -> dict:
    """Runs a boto3 call that must fail with `code` (or one of several);
    checks the HTTP status and that a request id came back. Returns the
    botocore error response."""
    codes = (code,) if isinstance(code, str) else code
    try:
        result = call()
    except ClientError as e:
        err = e.response
        got = err.get("Error", {}).get("Code")
        meta = err.get("ResponseMetadata", {})
        assert got in codes, f"expected {' or '.join(codes)}, got {got}: {err.get('Error')}"
        if status is not None:
            assert meta.get("HTTPStatusCode") == status, f"{code}: HTTP {meta.get('HTTPStatusCode')}, expected {status}"
        assert meta.get("RequestId"), f"{code}: no request id in {meta}"
        return err
    raise AssertionError(f"expected {code}, but the call succeeded: {result!r}")


def assert_subset(sent: Any, got: Any, path: str = "$") -> None:
    """Every member of `sent` comes back with the same value in `got`; lists
    must match element by element. `got` may carry extra (defaulted) members."""
    if isinstance(sent, dict):
        assert isinstance(got, dict), f"{path}: expected an object, got {got!r}"
        for k, v in sent.items():
            assert k in got, f"{path}.{k} missing from the response (sent {v!r})"
            assert_subset(v, got[k], f"{path}.{k}")
    elif isinstance(sent, list):
        assert isinstance(got, list), f"{path}: expected a list, got {got!r}"
        assert len(sent) == len(got), f"{path}: sent {len(sent)} items, got {len(got)}: {got!r}"
        for i, (s, g) in enumerate(zip(sent, got)):
            assert_subset(s, g, f"{path}[{i}]")
    else:
        assert sent == got and type(sent) is type(got), f"{path}: sent {sent!r}, got {got!r}"


def tags_dict(tags: list[dict] | None) -> dict[str, str]:
    return {t["key"]: t.get("value", "") for t in (tags or [])}


def settings_dict(settings: list[dict] | None) -> dict[str, str]:
    return {s["name"]: s.get("value") for s in (settings or [])}


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.1, what: str = "condition"):
    """Polls `predicate` until it returns something truthy, with a deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def parse_metrics(text: str) -> list[tuple[str, dict[str, str], float]]:
    """Parses Prometheus/OpenMetrics text into (name, labels, value) samples."""
    samples = []
    line_re = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)')
    label_re = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = line_re.match(line)
        if not m:
            continue
        labels = dict(label_re.findall(m.group(2) or ""))
        try:
            value = float(m.group(3))
        except ValueError:
            continue
        samples.append((m.group(1), labels, value))
    return samples


# --------------------------------------------------------------------------
# agents, images and waiting

BUSYBOX = "/bin/busybox"
BUSYBOX_IMAGE = "berth-e2e/busybox:latest"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def busybox_image(name: str = BUSYBOX_IMAGE) -> str:
    """Builds a tiny image from Debian's static busybox (`docker import`),
    with /www/index.html for httpd. Skips (fails under CI) without docker."""
    import io
    import shutil
    import tarfile

    import pytest

    ok = shutil.which("docker") and subprocess.run(["docker", "info"], capture_output=True).returncode == 0
    if not ok or not Path(BUSYBOX).exists():
        if in_ci():
            pytest.fail("docker and /bin/busybox (busybox-static) are required in CI")
        pytest.skip("docker or /bin/busybox missing")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(BUSYBOX, arcname="bin/busybox")
        for d in ("etc", "tmp", "www"):
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            tar.addfile(info)
        page = b"hello from berth\n"
        info = tarfile.TarInfo("www/index.html")
        info.size = len(page)
        tar.addfile(info, io.BytesIO(page))
    subprocess.run(["docker", "import", "-", name], input=buf.getvalue(), check=True, capture_output=True)
    return name


class BerthAgent:
    """One `berth agent` process on the local Docker Engine."""

    def __init__(self, endpoint: str, data_dir: Path, log: Path, zone: str,
                 cluster: str = "default", extra_args: list[str] | None = None):
        self.endpoint, self.data_dir, self.log, self.zone = endpoint, Path(data_dir), Path(log), zone
        self.cluster = cluster
        self.extra_args = extra_args or []
        if "--metadata-port" not in self.extra_args:
            # Several agents share this host: each serves task metadata on a free port.
            self.extra_args += ["--metadata-port", "0"]
        self.proc: subprocess.Popen | None = None
        self.arn: str | None = None

    def start(self) -> "BerthAgent":
        env = hermetic_env()
        env.update(AWS_ACCESS_KEY_ID=ROOT_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY=ROOT_SECRET_ACCESS_KEY,
                   RUST_LOG="info", NO_COLOR="1")
        self.proc = subprocess.Popen(
            [str(berth_binary()), "agent", "--server", self.endpoint, "--cluster", self.cluster,
             "--data-dir", str(self.data_dir), "--availability-zone", self.zone,
             "--bind-ip", "127.0.0.1", "--poll-interval-ms", "300", *self.extra_args],
            stdout=subprocess.PIPE, stderr=open(self.log, "a"), env=env, text=True)
        line = self.proc.stdout.readline()
        assert "registered as" in line, f"agent did not register: {line!r}\n{self.log.read_text()[-2000:]}"
        self.arn = line.strip().rsplit(" ", 1)[1]
        return self

    def stop(self, sig=signal.SIGKILL) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=10)

    def remove_containers(self) -> None:
        subprocess.run(
            f"docker ps -aq --filter label=com.berth.container-instance-arn={self.arn} | xargs -r docker rm -f",
            shell=True, capture_output=True)
