"""Fixtures of the end-to-end suite.

- `berth`: one `berth server` for the whole session, on a free port, a temp
  data dir and fixed root credentials given through the environment.
- `aws`: runs the real `aws` CLI against it (returns parsed JSON; `.fail()`
  returns the CLI's error).
- `ecs`, `sts`: boto3 clients against it.
- `berth_factory`: starts extra servers (own data dirs, own ports) for tests
  that restart, kill or configure a server differently.

The `aws` CLI and boto3 are prerequisites. Missing, they skip the suite on a
developer's machine and fail it when CI=true.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pytest

import berthlib
from berthlib import BerthServer


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def _require(ok: bool, what: str) -> None:
    if ok:
        return
    msg = f"{what} is required by the end-to-end suite"
    if _in_ci():
        pytest.fail(msg + " (CI=true: not skipping)", pytrace=False)
    pytest.skip(msg)


@pytest.fixture(scope="session", autouse=True)
def prerequisites():
    _require(shutil.which("aws") is not None, "the aws CLI (`pip install awscli`)")
    _require(berthlib.boto3 is not None, "boto3 (`pip install boto3`)")
    binary = berthlib.berth_binary()
    if not binary.exists():
        pytest.fail(
            f"berth binary not found at {binary}: build it (`cargo build -p berth`) or set BERTH_BIN",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("berth-e2e")


@pytest.fixture(scope="session")
def berth(prerequisites, session_dir) -> BerthServer:
    server = BerthServer(session_dir / "data", log_dir=session_dir)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def endpoint(berth) -> str:
    return berth.endpoint


@pytest.fixture(scope="session")
def root_credentials() -> tuple[str, str]:
    return (berthlib.ROOT_ACCESS_KEY_ID, berthlib.ROOT_SECRET_ACCESS_KEY)


@pytest.fixture(scope="session")
def aws(berth, session_dir) -> berthlib.AwsCli:
    return berth.aws(session_dir / "cli")


@pytest.fixture(scope="session")
def ecs(berth):
    return berth.client("ecs")


@pytest.fixture(scope="session")
def sts(berth):
    return berth.client("sts")


@pytest.fixture
def unique():
    """Returns a fresh resource name with a readable prefix."""

    def make(prefix: str = "e2e") -> str:
        return f"{prefix}-{uuid.uuid4().hex[:10]}"

    return make


class ServerFactory:
    def __init__(self, base: Path):
        self.base = base
        self.servers: list[BerthServer] = []

    def new(self, name: str | None = None, **kw) -> BerthServer:
        data_dir = kw.pop("data_dir", None) or self.base / (name or f"data-{len(self.servers)}")
        server = BerthServer(data_dir, log_dir=self.base, **kw)
        self.servers.append(server)
        return server

    def start(self, name: str | None = None, **kw) -> BerthServer:
        return self.new(name, **kw).start()

    def close(self):
        for s in self.servers:
            s.kill()


@pytest.fixture
def berth_factory(prerequisites, tmp_path) -> ServerFactory:
    factory = ServerFactory(tmp_path)
    yield factory
    factory.close()
