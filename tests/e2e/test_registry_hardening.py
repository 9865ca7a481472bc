"""Berth's registry against hostile and careless clients (issue 13), on a
real server: registry tokens bound to their access key and to ECR's 12
hours, chunks off the session's offset, manifests that lie about sizes, a
full disk, and owner-only files.

A token is signed with `<data-dir>/registry/token-key`; these tests forge
tokens with that very key, as anyone who could read it would, and check the
server still refuses what no real key issued or what lives too long.

docker and skopeo are prerequisites of the client checks (skipped on a
developer's machine without them, failed when CI=true). The full-disk test
mounts a small tmpfs, so it needs root; without root it is skipped.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import shutil
import stat
import subprocess
import time
from pathlib import Path

import pytest

import berthlib

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
HOUR_MS = 3600 * 1000


def require_tool(name: str) -> None:
    ok = shutil.which(name) is not None
    if ok and name == "docker":
        ok = subprocess.run(["docker", "info"], capture_output=True).returncode == 0
    if ok:
        return
    msg = f"`{name}` is required by this test"
    if berthlib.in_ci():
        pytest.fail(msg + " (CI=true: not skipping)", pytrace=False)
    pytest.skip(msg)


def run(*argv, input=None, check=True, timeout=120) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True, input=input,
                          env=berthlib.hermetic_env(), timeout=timeout)
    if check:
        assert proc.returncode == 0, f"{' '.join(map(str, argv))} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(key: bytes, payload: dict) -> str:
    """A registry token signed with the server's own key."""
    body = b64url(json.dumps(payload).encode())
    return body + "." + b64url(hmac.new(key, body.encode(), hashlib.sha256).digest())


class Registry:
    """Raw Distribution API calls with Basic auth (user AWS)."""

    def __init__(self, endpoint: str, password: str):
        self.endpoint = endpoint
        self.auth = "Basic " + base64.b64encode(f"AWS:{password}".encode()).decode()
        self.http = berthlib.http()

    def __call__(self, method, path, data=None, headers=None):
        h = {"Authorization": self.auth, **(headers or {})}
        if data is not None:
            h.setdefault("Content-Type", "application/octet-stream")
        return self.http.request(method, self.endpoint + path, data=data, headers=h, timeout=30)

    def push_blob(self, name: str, data: bytes) -> str:
        d = sha256(data)
        r = self("POST", f"/v2/{name}/blobs/uploads/?digest={d}", data=data)
        assert r.status_code == 201, r.text
        return d

    def start_upload(self, name: str) -> str:
        r = self("POST", f"/v2/{name}/blobs/uploads/")
        assert r.status_code == 202, r.text
        return r.headers["Location"]


def oci_error(resp) -> dict:
    return resp.json()["errors"][0]


@pytest.fixture(scope="module")
def password(aws) -> str:
    r = aws.run("ecr", "get-login-password")
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


@pytest.fixture(scope="module")
def reg(berth, password) -> Registry:
    return Registry(berth.endpoint, password)


@pytest.fixture
def repo(aws, unique):
    def make(prefix="hard") -> str:
        name = f"{prefix}/{unique('r')}"
        aws("ecr", "create-repository", "--repository-name", name)
        return name
    return make


def oci_layout(path: Path, tag: str, layer: bytes) -> None:
    """An OCI image layout holding one image with one (uncompressed) layer."""
    blobs = path / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> tuple[str, int]:
        (blobs / sha256(data)[7:]).write_bytes(data)
        return sha256(data), len(data)

    ld, ls = put(layer)
    cd, cs = put(json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                             "rootfs": {"type": "layers", "diff_ids": [ld]}}).encode())
    md, ms = put(json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                             "config": {"mediaType": OCI_CONFIG, "digest": cd, "size": cs},
                             "layers": [{"mediaType": OCI_LAYER, "digest": ld, "size": ls}]}).encode())
    (path / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    (path / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": md, "size": ms,
         "annotations": {"org.opencontainers.image.ref.name": tag}}]}))


def a_tar(name: str, content: bytes) -> bytes:
    import io
    import tarfile
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(content)
        tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


# --------------------------------------------------------------------------
# tokens


def test_login_password_works_with_docker_skopeo_and_basic_auth(berth, password, reg, repo, tmp_path):
    host = berth.address
    # HTTP Basic, user AWS.
    assert reg("GET", "/v2/_catalog").status_code == 200
    # docker login checks the password against /v2/.
    require_tool("docker")
    login = run("docker", "login", "--username", "AWS", "--password-stdin", host, input=password)
    assert "Login Succeeded" in login.stdout + login.stderr
    run("docker", "logout", host, check=False)
    # skopeo pushes and reads an image with it.
    require_tool("skopeo")
    name = repo("skopeo")
    oci_layout(tmp_path / "in", "v1", a_tar("hello", b"hello from skopeo\n"))
    run("skopeo", "copy", "--dest-creds", f"AWS:{password}", "--dest-tls-verify=false",
        f"oci:{tmp_path / 'in'}:v1", f"docker://{host}/{name}:v1")
    inspect = json.loads(run("skopeo", "inspect", "--creds", f"AWS:{password}", "--tls-verify=false",
                             f"docker://{host}/{name}:v1").stdout)
    assert inspect["RepoTags"] == ["v1"]


def test_forged_tokens_are_refused_even_when_signed_with_the_real_key(berth):
    key = (berth.data_dir / "registry" / "token-key").read_bytes()
    http = berthlib.http()

    def status(payload: dict) -> int:
        r = http.get(berth.endpoint + "/v2/_catalog",
                     headers={"Authorization": f"Bearer {forge(key, payload)}"})
        if r.status_code == 401:
            assert oci_error(r)["code"] == "UNAUTHORIZED"
            assert r.headers["WWW-Authenticate"].startswith("Basic realm=")
        return r.status_code

    now = int(time.time() * 1000)
    root = berthlib.ROOT_ACCESS_KEY_ID
    # The forging is right: what the server itself would mint passes.
    assert status({"k": root, "i": now, "x": now + HOUR_MS}) == 200
    # An access key that does not exist.
    assert status({"k": "AKIAFORGEDNOSUCHKEY1", "i": now, "x": now + HOUR_MS}) == 401
    # Ten years of life, with and without an issue time.
    assert status({"k": root, "i": now, "x": now + 10 * 365 * 24 * HOUR_MS}) == 401
    assert status({"k": root, "x": now + 10 * 365 * 24 * HOUR_MS}) == 401
    # A day's lifetime, used in its last 12 hours.
    assert status({"k": root, "i": now - 20 * HOUR_MS, "x": now + 4 * HOUR_MS}) == 401


# --------------------------------------------------------------------------
# uploads and manifests


def test_a_patch_off_the_session_offset_gets_416_and_changes_nothing(reg, repo):
    name = repo("patch")
    data = os.urandom(200_000)
    loc = reg.start_upload(name)
    r = reg("PATCH", loc, data=data[:50_000], headers={"Content-Range": "0-49999"})
    assert r.status_code == 202, r.text
    for bad in ["0-149999", "60000-209999", "50000-49999"]:
        r = reg("PATCH", loc, data=data[50_000:], headers={"Content-Range": bad})
        assert r.status_code == 416, bad
        assert r.headers["Location"] == loc
        assert r.headers["Range"] == "0-49999"
        assert oci_error(r)["code"] == "RANGE_INVALID"
    # Starts right, but says more bytes than the body has.
    r = reg("PATCH", loc, data=data[50_000:], headers={"Content-Range": "50000-299999"})
    assert r.status_code == 400 and oci_error(r)["code"] == "SIZE_INVALID"
    st = reg("GET", loc)
    assert st.status_code == 204 and st.headers["Range"] == "0-49999"
    r = reg("PATCH", loc, data=data[50_000:], headers={"Content-Range": f"50000-{len(data) - 1}"})
    assert r.status_code == 202, r.text
    r = reg("PUT", f"{loc}?digest={sha256(data)}")
    assert r.status_code == 201, r.text
    assert reg("GET", f"/v2/{name}/blobs/{sha256(data)}").content == data


def test_a_manifest_whose_sizes_lie_is_refused_on_both_apis(aws, reg, repo):
    name = repo("sizes")
    config = b'{"architecture":"amd64","os":"linux"}'
    layer = os.urandom(3000)
    cd, ld = reg.push_blob(name, config), reg.push_blob(name, layer)

    def manifest(cs: int, ls: int) -> bytes:
        return json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": {"mediaType": OCI_CONFIG, "digest": cd, "size": cs},
                           "layers": [{"mediaType": OCI_LAYER, "digest": ld, "size": ls}]}).encode()

    for cs, ls, wrong in [(len(config) + 1, len(layer), cd), (len(config), 1, ld)]:
        body = manifest(cs, ls)
        r = reg("PUT", f"/v2/{name}/manifests/v1", data=body, headers={"Content-Type": OCI_MANIFEST})
        assert r.status_code == 400
        err = oci_error(r)
        assert err["code"] == "MANIFEST_INVALID"
        assert err["detail"]["digest"] == wrong
        e = aws.fail("ecr", "put-image", "--repository-name", name, "--image-tag", "v1",
                     "--image-manifest", body.decode())
        assert e.code == "InvalidParameterException", e.stderr
        assert wrong in e.message
    assert aws("ecr", "list-images", "--repository-name", name)["imageIds"] == []
    r = reg("PUT", f"/v2/{name}/manifests/v1", data=manifest(len(config), len(layer)),
            headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 201, r.text


# --------------------------------------------------------------------------
# files on disk


def test_everything_under_the_registry_directory_is_owner_only(berth, reg, repo):
    name = repo("modes")
    reg.push_blob(name, os.urandom(10_000))
    loc = reg.start_upload(name)  # an upload in progress has a file too
    assert reg("PATCH", loc, data=b"partial", headers={"Content-Range": "0-6"}).status_code == 202
    root = berth.data_dir / "registry"
    seen = 0
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        want = 0o700 if path.is_dir() else 0o600
        assert mode == want, f"{path} is {mode:o}"
        seen += 1
    assert seen >= 6  # root, blobs/, sha256/, a shard, the blob, uploads/, ...
    assert reg("DELETE", loc).status_code == 204


# --------------------------------------------------------------------------
# a full disk


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs (root only)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def fill(mnt: Path, leave: int) -> Path:
    """Writes a filler file until only about `leave` bytes are free."""
    st = os.statvfs(mnt)
    free = st.f_bavail * st.f_frsize
    filler = mnt / "filler"
    with open(filler, "wb") as f:
        left = max(0, free - leave)
        while left > 0:
            n = min(left, 1 << 20)
            f.write(b"\0" * n)
            left -= n
    return filler


def test_a_full_disk_answers_a_clear_error_and_leaves_no_partial_state(berth_factory, small_disk, tmp_path):
    server = berth_factory.start("full", data_dir=small_disk / "data")
    try:
        aws = server.aws(tmp_path / "cli")
        aws("ecr", "create-repository", "--repository-name", "full/disk")
        password = aws.run("ecr", "get-login-password").stdout.strip()
        reg = Registry(server.endpoint, password)
        name = "full/disk"
        first = os.urandom(100_000)
        loc = reg.start_upload(name)
        assert reg("PATCH", loc, data=first, headers={"Content-Range": "0-99999"}).status_code == 202
        filler = fill(small_disk, leave=128 << 10)
        uploads = small_disk / "data" / "registry" / "uploads"
        # Bodies under a write batch (1 MiB) are read whole before the
        # write that fails, so the client always gets the answer.
        blob = os.urandom(512 << 10)
        d = sha256(blob)
        r = reg("POST", f"/v2/{name}/blobs/uploads/?digest={d}", data=blob)
        assert r.status_code == 507, r.text
        err = oci_error(r)
        assert "no space left" in err["message"], err
        assert err["message"] != "unknown error"
        assert reg("HEAD", f"/v2/{name}/blobs/{d}").status_code == 404
        assert len(list(uploads.iterdir())) == 1  # only the chunked session's file
        # A chunk: refused whole, the session stays where it was.
        r = reg("PATCH", loc, data=blob, headers={"Content-Range": f"100000-{100_000 + len(blob) - 1}"})
        assert r.status_code == 507, r.text
        st = reg("GET", loc)
        assert st.status_code == 204 and st.headers["Range"] == "0-99999"
        # The ECR API says so too.
        upload_id = aws("ecr", "initiate-layer-upload", "--repository-name", name)["uploadId"]
        part = tmp_path / "part"
        part.write_bytes(blob)
        e = aws.fail("ecr", "upload-layer-part", "--repository-name", name, "--upload-id", upload_id,
                     "--part-first-byte", "0", "--part-last-byte", str(len(blob) - 1),
                     "--layer-part-blob", f"fileb://{part}")
        assert e.code == "ServerException", e.stderr
        assert "no space left" in e.message
        # Space comes back: the same chunk goes through and the blob is whole.
        filler.unlink()
        r = reg("PATCH", loc, data=blob, headers={"Content-Range": f"100000-{100_000 + len(blob) - 1}"})
        assert r.status_code == 202, r.text
        whole = first + blob
        r = reg("PUT", f"{loc}?digest={sha256(whole)}")
        assert r.status_code == 201, r.text
        assert reg("GET", f"/v2/{name}/blobs/{sha256(whole)}").content == whole
        assert "registry storage is full" in server.log_path.read_text()
    finally:
        server.kill()
