"""Berth's ECR: the OCI Distribution API under /v2/ with the real docker CLI,
skopeo and raw HTTP, and the ECR JSON API with the real aws CLI.

docker, skopeo and the aws CLI are prerequisites: missing, these tests skip
on a developer's machine and fail when CI=true. Docker treats 127.0.0.0/8
registries as insecure (plain http) by default, so no daemon setup is needed.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import io
import json
import os
import shutil
import subprocess
import tarfile
import time
import uuid
from pathlib import Path

import pytest

import berthlib

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def require_tool(name: str) -> None:
    if shutil.which(name):
        if name == "docker":
            ok = subprocess.run(["docker", "info"], capture_output=True).returncode == 0
            if ok:
                return
            msg = "a running Docker Engine is required"
        else:
            return
    else:
        msg = f"`{name}` is required by the registry tests"
    if _in_ci():
        pytest.fail(msg + " (CI=true: not skipping)", pytrace=False)
    pytest.skip(msg)


def run(*argv, input=None, check=True, timeout=180) -> subprocess.CompletedProcess:
    env = berthlib.hermetic_env()
    proc = subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, input=input, env=env, timeout=timeout
    )
    if check:
        assert proc.returncode == 0, f"{' '.join(map(str, argv))} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def host(berth) -> str:
    return berth.address


@pytest.fixture(scope="module")
def password(aws) -> str:
    r = aws.run("ecr", "get-login-password")
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


@pytest.fixture(scope="module")
def reg(berth, password):
    return Registry(berth.endpoint, password)


@pytest.fixture
def repo(aws, unique):
    """Creates a fresh repository (with a slash in its name) and returns its name."""

    def make(prefix="e2e", **kw) -> str:
        name = f"{prefix}/{unique('r')}"
        args = ["ecr", "create-repository", "--repository-name", name]
        for k, v in kw.items():
            args += [f"--{k.replace('_', '-')}", v]
        aws(*args)
        return name

    return make


@pytest.fixture(scope="module")
def docker_login(host, password):
    require_tool("docker")
    run("docker", "login", "--username", "AWS", "--password-stdin", host, input=password)
    yield
    run("docker", "logout", host, check=False)


@pytest.fixture(scope="module")
def build_image(tmp_path_factory):
    """Builds a tiny image locally, without pulling: FROM scratch with a
    static busybox and a marker file."""
    require_tool("docker")
    busybox = shutil.which("busybox") or "/bin/busybox"
    if not Path(busybox).exists():
        pytest.fail("a static busybox is required (apt-get install -y busybox-static)", pytrace=False)
    built = []

    def build(tag: str, marker: str) -> str:
        ctx = tmp_path_factory.mktemp("img")
        shutil.copy(busybox, ctx / "busybox")
        (ctx / "marker").write_text(marker)
        (ctx / "Dockerfile").write_text(
            'FROM scratch\nCOPY busybox /bin/busybox\nCOPY marker /marker\nENTRYPOINT ["/bin/busybox"]\n'
        )
        env = {"DOCKER_BUILDKIT": "0"}
        proc = subprocess.run(
            ["docker", "build", "-q", "-t", tag, str(ctx)],
            capture_output=True, text=True, env={**berthlib.hermetic_env(), **env}, timeout=300,
        )
        assert proc.returncode == 0, proc.stderr
        built.append(tag)
        return tag

    yield build
    for tag in built:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)


class Registry:
    """Raw Distribution API calls with a registry token."""

    def __init__(self, endpoint: str, password: str):
        self.endpoint = endpoint
        self.auth = "Basic " + base64.b64encode(f"AWS:{password}".encode()).decode()
        self.http = berthlib.http()

    def __call__(self, method, path, data=None, headers=None, auth=True):
        h = dict(headers or {})
        if auth:
            h.setdefault("Authorization", self.auth)
        if data is not None and "Content-Type" not in h:
            h["Content-Type"] = "application/octet-stream"
        return self.http.request(method, self.endpoint + path, data=data, headers=h)

    def push_blob(self, name: str, data: bytes) -> str:
        d = sha256(data)
        r = self("POST", f"/v2/{name}/blobs/uploads/?digest={d}", data=data)
        assert r.status_code == 201, r.text
        return d

    def push_image(self, name: str, ref: str, layer: bytes, config: dict | None = None,
                   media_type=OCI_MANIFEST, extra: dict | None = None) -> tuple[str, bytes]:
        cfg = json.dumps(config or {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
        cd = self.push_blob(name, cfg)
        ld = self.push_blob(name, layer)
        cfg_type = "application/vnd.oci.image.config.v1+json" if media_type == OCI_MANIFEST else "application/vnd.docker.container.image.v1+json"
        layer_type = "application/vnd.oci.image.layer.v1.tar" if media_type == OCI_MANIFEST else "application/vnd.docker.image.rootfs.diff.tar.gzip"
        m = {
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": {"mediaType": cfg_type, "digest": cd, "size": len(cfg)},
            "layers": [{"mediaType": layer_type, "digest": ld, "size": len(layer)}],
            **(extra or {}),
        }
        body = json.dumps(m).encode()
        r = self("PUT", f"/v2/{name}/manifests/{ref}", data=body, headers={"Content-Type": media_type})
        assert r.status_code == 201, r.text
        assert r.headers["Docker-Content-Digest"] == sha256(body)
        return sha256(body), body


def oci_error(resp) -> str:
    return resp.json()["errors"][0]["code"]


# --------------------------------------------------------------------------
# docker


def test_docker_login_push_pull_run(aws, host, repo, docker_login, build_image):
    name = repo("docker")
    tag = f"{host}/{name}:v1"
    build_image(tag, "first")
    push = run("docker", "push", tag)
    assert "digest: sha256:" in push.stdout
    run("docker", "rmi", tag)
    run("docker", "pull", tag)
    out = run("docker", "run", "--rm", tag, "cat", "/marker")
    assert out.stdout.strip() == "first"
    details = aws("ecr", "describe-images", "--repository-name", name)["imageDetails"]
    assert len(details) == 1
    d = details[0]
    assert d["imageTags"] == ["v1"]
    assert d["imageManifestMediaType"] == DOCKER_MANIFEST
    assert d["imageSizeInBytes"] > 1000
    assert d["lastRecordedPullTime"] >= d["imagePushedAt"]


def test_docker_push_to_immutable_repo_refuses_moving_a_tag(aws, host, repo, docker_login, build_image):
    name = repo("immutable", image_tag_mutability="IMMUTABLE")
    tag = f"{host}/{name}:v1"
    build_image(tag, "one")
    run("docker", "push", tag)
    # The same image again is fine; a different one under the same tag is not.
    run("docker", "push", tag)
    build_image(tag, "two")
    refused = run("docker", "push", tag, check=False)
    assert refused.returncode != 0
    assert "cannot be overwritten because the repository is immutable" in refused.stderr + refused.stdout
    ids = aws("ecr", "list-images", "--repository-name", name)["imageIds"]
    assert len(ids) == 1


# --------------------------------------------------------------------------
# auth


def test_registry_requires_a_valid_token(berth, reg, aws):
    http = berthlib.http()
    r = http.get(berth.endpoint + "/v2/")
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith("Basic realm=")
    assert oci_error(r) == "UNAUTHORIZED"
    assert r.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    # Basic and Bearer with the token both work.
    assert reg("GET", "/v2/").status_code == 200
    token = reg.auth.split(" ", 1)[1]
    password = base64.b64decode(token).decode().split(":", 1)[1]
    assert http.get(berth.endpoint + "/v2/", headers={"Authorization": f"Bearer {password}"}).status_code == 200
    # A wrong token, a wrong user, a tampered token.
    for header in [
        "Basic " + base64.b64encode(b"AWS:not-a-token").decode(),
        "Basic " + base64.b64encode(f"bob:{password}".encode()).decode(),
        "Bearer " + password[:-2] + ("AA" if not password.endswith("AA") else "BB"),
    ]:
        r = http.get(berth.endpoint + "/v2/_catalog", headers={"Authorization": header})
        assert r.status_code == 401, header
        assert oci_error(r) == "UNAUTHORIZED"
    # SigV4 credentials are not registry credentials.
    r = http.get(berth.endpoint + "/v2/", headers={"Authorization": "AWS4-HMAC-SHA256 Credential=x"})
    assert r.status_code == 401


def _mint(key: bytes, access_key: str, expires_ms: int) -> str:
    b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    body = b64(json.dumps({"k": access_key, "x": expires_ms}).encode())
    sig = b64(hmac.new(key, body.encode(), hashlib.sha256).digest())
    return f"{body}.{sig}"


def test_expired_token_is_refused(berth, aws):
    key_path = berth.data_dir / "registry" / "token-key"
    assert key_path.stat().st_mode & 0o777 == 0o600
    key = key_path.read_bytes()
    http = berthlib.http()
    fresh = _mint(key, berthlib.ROOT_ACCESS_KEY_ID, int(time.time() * 1000) + 60_000)
    expired = _mint(key, berthlib.ROOT_ACCESS_KEY_ID, int(time.time() * 1000) - 1)
    ok = http.get(berth.endpoint + "/v2/", headers={"Authorization": f"Bearer {fresh}"})
    assert ok.status_code == 200
    r = http.get(berth.endpoint + "/v2/", headers={"Authorization": f"Bearer {expired}"})
    assert r.status_code == 401
    assert oci_error(r) == "UNAUTHORIZED"
    assert "expired" in r.json()["errors"][0]["message"]


def test_get_authorization_token_shape(aws, host):
    data = aws("ecr", "get-authorization-token")["authorizationData"][0]
    user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    assert user == "AWS" and password
    assert data["proxyEndpoint"] == f"http://{host}"
    # 12 hours, as ECR
    expires = data["expiresAt"]
    if isinstance(expires, str):
        from datetime import datetime
        expires = datetime.fromisoformat(expires).timestamp()
    assert 11.9 * 3600 < expires - time.time() <= 12 * 3600 + 60


# --------------------------------------------------------------------------
# Distribution API over raw HTTP


def test_digest_mismatch_is_refused_and_leaves_nothing(berth, reg, repo):
    name = repo("mismatch")
    data = os.urandom(4096)
    claimed = sha256(b"something else")
    r = reg("POST", f"/v2/{name}/blobs/uploads/?digest={claimed}", data=data)
    assert r.status_code == 400
    assert oci_error(r) == "DIGEST_INVALID"
    blobs = berth.data_dir / "registry" / "blobs" / "sha256"
    for d in (claimed, sha256(data)):
        h = d.split(":")[1]
        assert not (blobs / h[:2] / h).exists()
    assert reg("HEAD", f"/v2/{name}/blobs/{sha256(data)}").status_code == 404
    # Chunked too: the final PUT with a wrong digest fails and the session is gone.
    r = reg("POST", f"/v2/{name}/blobs/uploads/")
    loc = r.headers["Location"]
    assert reg("PATCH", loc, data=data, headers={"Content-Range": f"0-{len(data) - 1}"}).status_code == 202
    r = reg("PUT", f"{loc}?digest={claimed}")
    assert oci_error(r) == "DIGEST_INVALID"
    assert reg("GET", loc).status_code == 404
    assert list((berth.data_dir / "registry" / "uploads").iterdir()) == []


def test_chunked_upload_status_and_range_get(reg, repo):
    name = repo("chunked")
    data = os.urandom(300_000)
    r = reg("POST", f"/v2/{name}/blobs/uploads/")
    assert r.status_code == 202
    loc = r.headers["Location"]
    assert r.headers["Docker-Upload-UUID"] in loc
    chunks = [data[:100_000], data[100_000:250_000], data[250_000:]]
    offset = 0
    for c in chunks:
        r = reg("PATCH", loc, data=c, headers={"Content-Range": f"{offset}-{offset + len(c) - 1}"})
        assert r.status_code == 202, r.text
        offset += len(c)
        assert r.headers["Range"] == f"0-{offset - 1}"
        st = reg("GET", loc)
        assert st.status_code == 204
        assert st.headers["Range"] == f"0-{offset - 1}"
    # A chunk that does not continue the upload is refused.
    r = reg("PATCH", loc, data=b"x", headers={"Content-Range": "5-5"})
    assert r.status_code == 416
    d = sha256(data)
    r = reg("PUT", f"{loc}?digest={d}")
    assert r.status_code == 201, r.text
    assert r.headers["Docker-Content-Digest"] == d
    assert r.headers["Location"] == f"/v2/{name}/blobs/{d}"
    head = reg("HEAD", f"/v2/{name}/blobs/{d}")
    assert head.status_code == 200
    assert head.headers["Content-Length"] == str(len(data))
    assert head.headers["Docker-Content-Digest"] == d
    full = reg("GET", f"/v2/{name}/blobs/{d}")
    assert full.content == data
    part = reg("GET", f"/v2/{name}/blobs/{d}", headers={"Range": "bytes=1000-1999"})
    assert part.status_code == 206
    assert part.content == data[1000:2000]
    assert part.headers["Content-Range"] == f"bytes 1000-1999/{len(data)}"
    bad = reg("GET", f"/v2/{name}/blobs/{d}", headers={"Range": f"bytes={len(data)}-"})
    assert bad.status_code == 416
    # Blob DELETE unlinks it from the repository.
    assert reg("DELETE", f"/v2/{name}/blobs/{d}").status_code == 202
    r = reg("GET", f"/v2/{name}/blobs/{d}")
    assert r.status_code == 404 and oci_error(r) == "BLOB_UNKNOWN"


def test_post_then_put_monolithic_and_cross_repo_mount(reg, repo):
    a, b = repo("mount"), repo("mount")
    data = os.urandom(5000)
    d = sha256(data)
    r = reg("POST", f"/v2/{a}/blobs/uploads/")
    r = reg("PUT", r.headers["Location"] + f"?digest={d}", data=data)
    assert r.status_code == 201
    r = reg("POST", f"/v2/{b}/blobs/uploads/?mount={d}&from={a}")
    assert r.status_code == 201
    assert r.headers["Location"] == f"/v2/{b}/blobs/{d}"
    assert reg("GET", f"/v2/{b}/blobs/{d}").content == data
    # Mounting what the source does not have falls back to an upload.
    r = reg("POST", f"/v2/{b}/blobs/uploads/?mount={sha256(b'nope')}&from={a}")
    assert r.status_code == 202


def test_manifests_by_tag_and_digest_and_missing_blob_refused(reg, repo, aws):
    name = repo("manifests")
    digest, body = reg.push_image(name, "latest", b"layer-bytes", media_type=DOCKER_MANIFEST)
    for ref in ("latest", digest):
        r = reg("GET", f"/v2/{name}/manifests/{ref}", headers={"Accept": DOCKER_MANIFEST})
        assert r.status_code == 200
        assert r.content == body
        assert r.headers["Content-Type"] == DOCKER_MANIFEST
        assert r.headers["Docker-Content-Digest"] == digest
        h = reg("HEAD", f"/v2/{name}/manifests/{ref}")
        assert h.status_code == 200 and h.headers["Content-Length"] == str(len(body))
    # A manifest naming a layer the repository lacks is refused.
    missing = sha256(b"never uploaded")
    cfg = reg.push_blob(name, b"{}")
    m = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
         "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg, "size": 2},
         "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": missing, "size": 14}]}
    r = reg("PUT", f"/v2/{name}/manifests/broken", data=json.dumps(m), headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 400
    assert oci_error(r) == "MANIFEST_BLOB_UNKNOWN"
    assert r.json()["errors"][0]["detail"]["digest"] == missing
    err = aws.fail("ecr", "put-image", "--repository-name", name, "--image-manifest", json.dumps(m), "--image-tag", "broken")
    assert err.code == "LayersNotFoundException"
    # Invalid JSON, and a digest reference that does not match.
    r = reg("PUT", f"/v2/{name}/manifests/bad", data=b"{nope", headers={"Content-Type": OCI_MANIFEST})
    assert oci_error(r) == "MANIFEST_INVALID"
    r = reg("PUT", f"/v2/{name}/manifests/{missing}", data=body, headers={"Content-Type": DOCKER_MANIFEST})
    assert oci_error(r) == "DIGEST_INVALID"
    r = reg("GET", f"/v2/{name}/manifests/nosuchtag")
    assert r.status_code == 404 and oci_error(r) == "MANIFEST_UNKNOWN"
    r = reg("GET", f"/v2/e2e/nosuchrepo-{uuid.uuid4().hex[:6]}/manifests/latest")
    assert r.status_code == 404 and oci_error(r) == "NAME_UNKNOWN"
    # Delete by tag, then by digest.
    assert reg("DELETE", f"/v2/{name}/manifests/latest").status_code == 202
    assert reg("GET", f"/v2/{name}/manifests/latest").status_code == 404
    assert reg("GET", f"/v2/{name}/manifests/{digest}").status_code == 200
    assert reg("DELETE", f"/v2/{name}/manifests/{digest}").status_code == 202
    assert reg("GET", f"/v2/{name}/manifests/{digest}").status_code == 404


def test_tags_and_catalog_pagination(reg, repo):
    name = repo("paging")
    for t in ["a", "b", "c", "d", "e"]:
        reg.push_image(name, t, b"same layer")
    r = reg("GET", f"/v2/{name}/tags/list")
    assert r.json() == {"name": name, "tags": ["a", "b", "c", "d", "e"]}
    seen, path = [], f"/v2/{name}/tags/list?n=2"
    while path:
        r = reg("GET", path)
        seen += r.json()["tags"]
        link = r.headers.get("Link")
        path = link[1:link.index(">")] if link else None
        if path:
            assert link.endswith('rel="next"')
    assert seen == ["a", "b", "c", "d", "e"]
    r = reg("GET", "/v2/_catalog?n=1")
    assert len(r.json()["repositories"]) == 1
    assert "Link" in r.headers
    everything = reg("GET", "/v2/_catalog").json()["repositories"]
    assert name in everything and everything == sorted(everything)
    after = reg("GET", f"/v2/_catalog?last={name}").json()["repositories"]
    assert all(n > name for n in after)


def test_oci_index_and_referrers(reg, repo):
    name = repo("index")
    amd, amd_body = reg.push_image(name, "amd64", b"amd64 layer")
    arm, arm_body = reg.push_image(name, "arm64", b"arm64 layer", config={"architecture": "arm64", "os": "linux"})
    index = {
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": amd, "size": len(amd_body), "platform": {"architecture": "amd64", "os": "linux"}},
            {"mediaType": OCI_MANIFEST, "digest": arm, "size": len(arm_body), "platform": {"architecture": "arm64", "os": "linux"}},
        ],
    }
    body = json.dumps(index).encode()
    r = reg("PUT", f"/v2/{name}/manifests/multi", data=body, headers={"Content-Type": OCI_INDEX})
    assert r.status_code == 201, r.text
    got = reg("GET", f"/v2/{name}/manifests/multi")
    assert got.headers["Content-Type"] == OCI_INDEX and got.content == body
    # An index naming a manifest the repository lacks is refused.
    index["manifests"].append({"mediaType": OCI_MANIFEST, "digest": sha256(b"ghost"), "size": 5})
    r = reg("PUT", f"/v2/{name}/manifests/ghost", data=json.dumps(index), headers={"Content-Type": OCI_INDEX})
    assert r.status_code == 400 and oci_error(r) == "MANIFEST_BLOB_UNKNOWN"
    # Referrers: an artifact whose subject is the amd64 image.
    empty = reg.push_blob(name, b"{}")
    sig = {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.example.sig",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
        "layers": [],
        "subject": {"mediaType": OCI_MANIFEST, "digest": amd, "size": len(amd_body)},
        "annotations": {"org.example": "yes"},
    }
    sig_body = json.dumps(sig).encode()
    r = reg("PUT", f"/v2/{name}/manifests/{sha256(sig_body)}", data=sig_body, headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 201, r.text
    assert r.headers["OCI-Subject"] == amd
    ref = reg("GET", f"/v2/{name}/referrers/{amd}")
    assert ref.status_code == 200
    assert ref.headers["Content-Type"] == OCI_INDEX
    manifests = ref.json()["manifests"]
    assert [m["digest"] for m in manifests] == [sha256(sig_body)]
    assert manifests[0]["artifactType"] == "application/vnd.example.sig"
    assert manifests[0]["annotations"] == {"org.example": "yes"}
    assert reg("GET", f"/v2/{name}/referrers/{arm}").json()["manifests"] == []
    filtered = reg("GET", f"/v2/{name}/referrers/{amd}?artifactType=application/other")
    assert filtered.json()["manifests"] == []
    assert filtered.headers["OCI-Filters-Applied"] == "artifactType"


# --------------------------------------------------------------------------
# skopeo


def _skopeo_creds(password):
    return ["--dest-creds", f"AWS:{password}", "--dest-tls-verify=false"]


def test_skopeo_copy_in_and_out(host, password, repo, build_image, tmp_path):
    require_tool("skopeo")
    name = repo("skopeo")
    local = build_image(f"berth-e2e-skopeo:{uuid.uuid4().hex[:6]}", "skopeo")
    archive = tmp_path / "img.tar"
    run("docker", "save", "-o", archive, local)
    run("skopeo", "copy", *_skopeo_creds(password), f"docker-archive:{archive}", f"docker://{host}/{name}:archive")
    out = tmp_path / "oci"
    run("skopeo", "copy", "--src-creds", f"AWS:{password}", "--src-tls-verify=false",
        f"docker://{host}/{name}:archive", f"oci:{out}:copy")
    index = json.loads((out / "index.json").read_text())
    assert len(index["manifests"]) == 1
    # Back in from the oci layout under another tag, and the bytes match.
    run("skopeo", "copy", *_skopeo_creds(password), f"oci:{out}:copy", f"docker://{host}/{name}:from-oci")
    inspect = json.loads(run("skopeo", "inspect", "--creds", f"AWS:{password}", "--tls-verify=false",
                             f"docker://{host}/{name}:from-oci").stdout)
    assert inspect["Name"] == f"{host}/{name}"
    assert sorted(inspect["RepoTags"]) == ["archive", "from-oci"]


def _oci_layout_with_one_layer(path: Path, layer: bytes, tag: str) -> str:
    """Writes an OCI image layout holding one image whose single layer is
    `layer` (gzip bytes); returns the layer's digest."""
    blobs = path / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> tuple[str, int]:
        d = sha256(data)
        (blobs / d[7:]).write_bytes(data)
        return d, len(data)

    layer_digest, layer_size = put(layer)
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": [sha256(gzip.decompress(layer))]}}).encode()
    config_digest, config_size = put(config)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_digest, "size": layer_size}],
    }).encode()
    manifest_digest, manifest_size = put(manifest)
    (path / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    (path / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": manifest_digest, "size": manifest_size,
         "annotations": {"org.opencontainers.image.ref.name": tag}}]}))
    return layer_digest


def test_skopeo_round_trips_a_layer_of_many_write_windows(host, password, repo, tmp_path):
    # 24 MiB of random bytes: the upload crosses many write batches and
    # several background flush windows on its way in, and comes back out
    # byte for byte.
    require_tool("skopeo")
    name = repo("large")
    payload = os.urandom(24 << 20)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("payload")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    layer = gzip.compress(buf.getvalue(), compresslevel=0)
    digest = _oci_layout_with_one_layer(tmp_path / "in", layer, "large")
    run("skopeo", "copy", *_skopeo_creds(password), f"oci:{tmp_path / 'in'}:large", f"docker://{host}/{name}:large")
    out = tmp_path / "out"
    run("skopeo", "copy", "--src-creds", f"AWS:{password}", "--src-tls-verify=false",
        f"docker://{host}/{name}:large", f"oci:{out}:large")
    back = (out / "blobs" / "sha256" / digest[7:]).read_bytes()
    assert len(back) == len(layer)
    assert sha256(back) == digest


def test_skopeo_multi_arch_index(host, password, repo, reg, tmp_path):
    require_tool("skopeo")
    name = repo("multiarch")
    amd, amd_body = reg.push_image(name, "amd64", b"amd64 bytes")
    arm, arm_body = reg.push_image(name, "arm64", b"arm64 bytes", config={"architecture": "arm64", "os": "linux"})
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": amd, "size": len(amd_body), "platform": {"architecture": "amd64", "os": "linux"}},
        {"mediaType": OCI_MANIFEST, "digest": arm, "size": len(arm_body), "platform": {"architecture": "arm64", "os": "linux"}},
    ]}
    r = reg("PUT", f"/v2/{name}/manifests/multi", data=json.dumps(index), headers={"Content-Type": OCI_INDEX})
    assert r.status_code == 201
    out = tmp_path / "multi"
    run("skopeo", "copy", "--all", "--src-creds", f"AWS:{password}", "--src-tls-verify=false",
        f"docker://{host}/{name}:multi", f"oci:{out}:multi")
    # And the whole index into a second repository with skopeo.
    other = repo("multiarch")
    run("skopeo", "copy", "--all", *_skopeo_creds(password), f"oci:{out}:multi", f"docker://{host}/{other}:multi")
    raw = json.loads(run("skopeo", "inspect", "--raw", "--creds", f"AWS:{password}", "--tls-verify=false",
                         f"docker://{host}/{other}:multi").stdout)
    assert sorted(m["platform"]["architecture"] for m in raw["manifests"]) == ["amd64", "arm64"]


# --------------------------------------------------------------------------
# aws CLI: the ECR JSON API


def test_repository_lifecycle_with_aws_cli(aws, repo, unique, host):
    name = repo("ops", image_tag_mutability="IMMUTABLE",
                image_scanning_configuration="scanOnPush=true",
                encryption_configuration="encryptionType=KMS")
    r = aws("ecr", "describe-repositories", "--repository-names", name)["repositories"][0]
    assert r["repositoryUri"] == f"{host}/{name}"
    assert r["repositoryArn"] == f"arn:aws:ecr:us-east-1:000000000000:repository/{name}"
    assert r["imageTagMutability"] == "IMMUTABLE"
    assert r["imageScanningConfiguration"] == {"scanOnPush": True}
    assert r["encryptionConfiguration"]["encryptionType"] == "KMS"
    assert aws.fail("ecr", "create-repository", "--repository-name", name).code == "RepositoryAlreadyExistsException"
    assert aws.fail("ecr", "create-repository", "--repository-name", "Bad_Name").code == "InvalidParameterException"
    assert aws.fail("ecr", "describe-repositories", "--repository-names", "e2e/none-" + unique()).code == "RepositoryNotFoundException"
    assert aws.fail("ecr", "create-repository", "--repository-name", unique("x"), "--image-tag-mutability", "SOMETIMES").code in (
        "InvalidParameterException", None)
    m = aws("ecr", "put-image-tag-mutability", "--repository-name", name, "--image-tag-mutability", "MUTABLE")
    assert m["imageTagMutability"] == "MUTABLE"
    # Pagination of DescribeRepositories (boto3 pages through nextToken).
    names = [repo("page") for _ in range(3)]
    ecr = berthlib.make_client("ecr", aws.endpoint, berthlib.ROOT_ACCESS_KEY_ID, berthlib.ROOT_SECRET_ACCESS_KEY)
    seen, kw, pages = [], {"maxResults": 2}, 0
    while True:
        page = ecr.describe_repositories(**kw)
        pages += 1
        seen += [x["repositoryName"] for x in page["repositories"]]
        if "nextToken" not in page:
            break
        kw["nextToken"] = page["nextToken"]
    assert pages >= 2 and set(names) <= set(seen) and len(seen) == len(set(seen))
    # Policies.
    policy = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "pull", "Effect": "Allow", "Principal": "*", "Action": ["ecr:BatchGetImage"]}]})
    assert aws.fail("ecr", "get-repository-policy", "--repository-name", name).code == "RepositoryPolicyNotFoundException"
    assert aws.fail("ecr", "set-repository-policy", "--repository-name", name, "--policy-text", "{}").code == "InvalidParameterException"
    aws("ecr", "set-repository-policy", "--repository-name", name, "--policy-text", policy)
    assert json.loads(aws("ecr", "get-repository-policy", "--repository-name", name)["policyText"]) == json.loads(policy)
    aws("ecr", "delete-repository-policy", "--repository-name", name)
    assert aws.fail("ecr", "delete-repository-policy", "--repository-name", name).code == "RepositoryPolicyNotFoundException"
    # Tags.
    arn = r["repositoryArn"]
    aws("ecr", "tag-resource", "--resource-arn", arn, "--tags", "Key=team,Value=a", "Key=env,Value=dev")
    aws("ecr", "untag-resource", "--resource-arn", arn, "--tag-keys", "env")
    assert aws("ecr", "list-tags-for-resource", "--resource-arn", arn)["tags"] == [{"Key": "team", "Value": "a"}]
    assert aws.fail("ecr", "tag-resource", "--resource-arn", arn, "--tags", "Key=aws:x,Value=1").code == "InvalidTagParameterException"
    assert aws("ecr", "describe-registry")["registryId"] == "000000000000"
    # Deletion.
    deleted = aws("ecr", "delete-repository", "--repository-name", name)["repository"]
    assert deleted["repositoryName"] == name
    assert aws.fail("ecr", "delete-repository", "--repository-name", name).code == "RepositoryNotFoundException"


def test_images_with_aws_cli(aws, reg, repo, tmp_path, berth):
    name = repo("images")
    d1, body1 = reg.push_image(name, "v1", b"first")
    d2, body2 = reg.push_image(name, "v2", b"second")
    reg.push_image(name, "v2b", b"second")  # same manifest: second tag on d2
    d3, _ = reg.push_image(name, "tmp", b"third")
    reg("DELETE", f"/v2/{name}/manifests/tmp")  # leaves d3 untagged
    ids = aws("ecr", "list-images", "--repository-name", name)["imageIds"]
    assert {(i["imageDigest"], i.get("imageTag")) for i in ids} == {(d1, "v1"), (d2, "v2"), (d2, "v2b"), (d3, None)}
    untagged = aws("ecr", "list-images", "--repository-name", name, "--filter", "tagStatus=UNTAGGED")["imageIds"]
    assert untagged == [{"imageDigest": d3}]
    tagged = aws("ecr", "describe-images", "--repository-name", name, "--filter", "tagStatus=TAGGED")["imageDetails"]
    assert {d["imageDigest"]: sorted(d["imageTags"]) for d in tagged} == {d1: ["v1"], d2: ["v2", "v2b"]}
    assert aws.fail("ecr", "describe-images", "--repository-name", name, "--image-ids", "imageTag=nope").code == "ImageNotFoundException"
    got = aws("ecr", "batch-get-image", "--repository-name", name, "--image-ids", "imageTag=v1", "imageTag=nope")
    assert got["images"][0]["imageManifest"] == body1.decode()
    assert got["images"][0]["imageId"] == {"imageDigest": d1, "imageTag": "v1"}
    assert got["failures"][0]["failureCode"] == "ImageNotFound"
    # PutImage: retag, refuse the same again, refuse a digest mismatch.
    put = aws("ecr", "put-image", "--repository-name", name, "--image-manifest", body1.decode(), "--image-tag", "release")
    assert put["image"]["imageId"]["imageDigest"] == d1
    assert aws.fail("ecr", "put-image", "--repository-name", name, "--image-manifest", body1.decode(),
                    "--image-tag", "release").code == "ImageAlreadyExistsException"
    assert aws.fail("ecr", "put-image", "--repository-name", name, "--image-manifest", body1.decode(),
                    "--image-digest", d2).code == "ImageDigestDoesNotMatchException"
    aws("ecr", "put-image-tag-mutability", "--repository-name", name, "--image-tag-mutability", "IMMUTABLE")
    assert aws.fail("ecr", "put-image", "--repository-name", name, "--image-manifest", body2.decode(),
                    "--image-tag", "release").code == "ImageTagAlreadyExistsException"
    aws("ecr", "put-image-tag-mutability", "--repository-name", name, "--image-tag-mutability", "MUTABLE")
    # Layers through the ECR API.
    layer = os.urandom(70_000)
    ld = sha256(layer)
    up = aws("ecr", "initiate-layer-upload", "--repository-name", name)
    part1, part2 = tmp_path / "p1", tmp_path / "p2"
    part1.write_bytes(layer[:40_000])
    part2.write_bytes(layer[40_000:])
    r = aws("ecr", "upload-layer-part", "--repository-name", name, "--upload-id", up["uploadId"],
            "--part-first-byte", 0, "--part-last-byte", 39_999, "--layer-part-blob", f"fileb://{part1}")
    assert r["lastByteReceived"] == 39_999
    err = aws.fail("ecr", "upload-layer-part", "--repository-name", name, "--upload-id", up["uploadId"],
                   "--part-first-byte", 10, "--part-last-byte", 30_009, "--layer-part-blob", f"fileb://{part2}")
    assert err.code == "InvalidLayerPartException"
    aws("ecr", "upload-layer-part", "--repository-name", name, "--upload-id", up["uploadId"],
        "--part-first-byte", 40_000, "--part-last-byte", len(layer) - 1, "--layer-part-blob", f"fileb://{part2}")
    done = aws("ecr", "complete-layer-upload", "--repository-name", name, "--upload-id", up["uploadId"], "--layer-digests", ld)
    assert done["layerDigest"] == ld
    check = aws("ecr", "batch-check-layer-availability", "--repository-name", name, "--layer-digests", ld, sha256(b"missing"))
    assert check["layers"][0]["layerAvailability"] == "AVAILABLE" and check["layers"][0]["layerSize"] == len(layer)
    assert check["failures"][0]["failureCode"] == "MissingLayerDigest"
    url = aws("ecr", "get-download-url-for-layer", "--repository-name", name, "--layer-digest", ld)["downloadUrl"]
    assert berthlib.http().get(url).content == layer
    assert aws.fail("ecr", "get-download-url-for-layer", "--repository-name", name,
                    "--layer-digest", sha256(b"missing")).code == "LayersNotFoundException"
    bad = aws("ecr", "initiate-layer-upload", "--repository-name", name)
    aws("ecr", "upload-layer-part", "--repository-name", name, "--upload-id", bad["uploadId"],
        "--part-first-byte", 0, "--part-last-byte", 39_999, "--layer-part-blob", f"fileb://{part1}")
    assert aws.fail("ecr", "complete-layer-upload", "--repository-name", name, "--upload-id", bad["uploadId"],
                    "--layer-digests", sha256(b"z")).code == "InvalidLayerException"
    # BatchDeleteImage by tag (other tags keep the image) and by digest.
    gone = aws("ecr", "batch-delete-image", "--repository-name", name, "--image-ids", "imageTag=v2b", "imageTag=nope")
    assert gone["imageIds"] == [{"imageDigest": d2, "imageTag": "v2b"}]
    assert gone["failures"][0]["failureCode"] == "ImageNotFound"
    aws("ecr", "batch-delete-image", "--repository-name", name, "--image-ids", f"imageDigest={d2}")
    left = {i["imageDigest"] for i in aws("ecr", "list-images", "--repository-name", name)["imageIds"]}
    assert d2 not in left and d1 in left
    # A repository with images is only deleted with --force.
    assert aws.fail("ecr", "delete-repository", "--repository-name", name).code == "RepositoryNotEmptyException"
    aws("ecr", "delete-repository", "--repository-name", name, "--force")
    assert reg("GET", f"/v2/{name}/tags/list").status_code == 404


def test_lifecycle_policy_storage_with_aws_cli(aws, repo):
    name = repo("lifecycle")
    policy = json.dumps({"rules": [{
        "rulePriority": 1, "description": "keep 2",
        "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 2},
        "action": {"type": "expire"}}]})
    assert aws.fail("ecr", "get-lifecycle-policy", "--repository-name", name).code == "LifecyclePolicyNotFoundException"
    bad = json.dumps({"rules": [{"rulePriority": 1, "selection": {"tagStatus": "tagged", "countType": "imageCountMoreThan",
                                                               "countNumber": 2}, "action": {"type": "expire"}}]})
    assert aws.fail("ecr", "put-lifecycle-policy", "--repository-name", name, "--lifecycle-policy-text", bad).code == "InvalidParameterException"
    aws("ecr", "put-lifecycle-policy", "--repository-name", name, "--lifecycle-policy-text", policy)
    got = aws("ecr", "get-lifecycle-policy", "--repository-name", name)
    assert json.loads(got["lifecyclePolicyText"]) == json.loads(policy)
    aws("ecr", "delete-lifecycle-policy", "--repository-name", name)
    assert aws.fail("ecr", "delete-lifecycle-policy", "--repository-name", name).code == "LifecyclePolicyNotFoundException"


def test_lifecycle_preview_and_enforcement(berth_factory, monkeypatch, tmp_path):
    """A server that enforces lifecycle policies every second: the preview
    names what the rules select, and enforcement then expires exactly that."""
    real_env = berthlib.hermetic_env
    monkeypatch.setattr(berthlib, "hermetic_env", lambda base=None: {**real_env(base), "BERTH_LIFECYCLE_INTERVAL": "1"})
    server = berth_factory.start("lifecycle")
    monkeypatch.setattr(berthlib, "hermetic_env", real_env)
    aws = server.aws(tmp_path / "cli")
    password = aws.run("ecr", "get-login-password").stdout.strip()
    reg = Registry(server.endpoint, password)
    name = "lc/app"
    aws("ecr", "create-repository", "--repository-name", name)
    pushed = {}
    for t in ["prod-1", "prod-2", "prod-3", "dev-1"]:
        pushed[t], _ = reg.push_image(name, t, f"layer {t}".encode())
        time.sleep(0.01)
    untagged, _ = reg.push_image(name, "scratch", b"untagged layer")
    reg("DELETE", f"/v2/{name}/manifests/scratch")
    policy = json.dumps({"rules": [
        {"rulePriority": 1, "description": "keep the newest prod",
         "selection": {"tagStatus": "tagged", "tagPrefixList": ["prod"], "countType": "imageCountMoreThan", "countNumber": 1},
         "action": {"type": "expire"}},
        {"rulePriority": 2, "description": "untagged older than a day",
         "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 1},
         "action": {"type": "expire"}},
    ]})
    assert aws.fail("ecr", "get-lifecycle-policy-preview", "--repository-name", name).code == "LifecyclePolicyPreviewNotFoundException"
    started = aws("ecr", "start-lifecycle-policy-preview", "--repository-name", name, "--lifecycle-policy-text", policy)
    assert started["status"] == "IN_PROGRESS"
    preview = aws("ecr", "get-lifecycle-policy-preview", "--repository-name", name)
    assert preview["status"] == "COMPLETE"
    assert {r["imageDigest"] for r in preview["previewResults"]} == {pushed["prod-1"], pushed["prod-2"]}
    assert all(r["appliedRulePriority"] == 1 and r["action"]["type"] == "EXPIRE" for r in preview["previewResults"])
    assert preview["summary"]["expiringImageTotalCount"] == 2
    # Nothing is expired by a preview.
    assert len(aws("ecr", "list-images", "--repository-name", name)["imageIds"]) == 5
    aws("ecr", "put-lifecycle-policy", "--repository-name", name, "--lifecycle-policy-text", policy)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        left = {i["imageDigest"] for i in aws("ecr", "list-images", "--repository-name", name)["imageIds"]}
        if len(left) == 3:
            break
        time.sleep(0.5)
    assert left == {pushed["prod-3"], pushed["dev-1"], untagged}
    assert "lastEvaluatedAt" in aws("ecr", "get-lifecycle-policy", "--repository-name", name)
