"""Registry garbage collection, end to end: images pushed with skopeo,
deleted with the aws CLI (and a manifest DELETE, and a forced repository
delete), then collected by a server sweeping every second.

The server runs with a grace period of GRACE seconds: a blob stays while
a manifest references it, and for GRACE seconds after its upload (a push
in flight uploads layers before its manifest). The checks on fresh blobs
happen a couple of sweeps after their upload, well inside the grace
period; the collected blobs are waited for, never timed.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import pytest

import berthlib
from test_registry import Registry, oci_error, require_tool, run, sha256

GRACE = 20
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _layer(name: str, data: bytes) -> bytes:
    """An uncompressed layer tar holding one file."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mtime = 0
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def write_oci_layout(path: Path, tag: str, layers: list[bytes]) -> dict:
    """An OCI image layout of one image, for `skopeo copy oci:<path>:<tag>`.
    Returns the digests of its config and layers."""
    blobs = path / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)

    def put(data: bytes) -> str:
        d = sha256(data)
        (blobs / d.split(":", 1)[1]).write_bytes(data)
        return d

    layer_digests = [put(l) for l in layers]
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": layer_digests},
    }).encode()
    config_digest = put(config)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": len(l)}
                   for d, l in zip(layer_digests, layers)],
    }).encode()
    manifest_digest = put(manifest)
    (path / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    (path / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": OCI_MANIFEST, "digest": manifest_digest, "size": len(manifest),
        "annotations": {"org.opencontainers.image.ref.name": tag}}]}))
    return {"config": config_digest, "layers": layer_digests}


@pytest.fixture(scope="module")
def gc_server(tmp_path_factory):
    require_tool("skopeo")
    base = tmp_path_factory.mktemp("gc")
    real_env = berthlib.hermetic_env
    berthlib.hermetic_env = lambda b=None: {
        **real_env(b), "BERTH_REGISTRY_GC_INTERVAL": "1", "BERTH_REGISTRY_GC_GRACE": str(GRACE)}
    try:
        server = berthlib.BerthServer(base / "data", log_dir=base).start()
    finally:
        berthlib.hermetic_env = real_env
    yield server
    server.stop()


class Gc:
    def __init__(self, server, tmp: Path):
        self.server = server
        self.aws = server.aws(tmp / "cli")
        self.password = self.aws.run("ecr", "get-login-password").stdout.strip()
        self.reg = Registry(server.endpoint, self.password)
        self.tmp = tmp

    def path(self, digest: str) -> Path:
        hexd = digest.split(":", 1)[1]
        return self.server.data_dir / "registry" / "blobs" / "sha256" / hexd[:2] / hexd

    def push(self, repo: str, tag: str, layers: list[bytes]) -> dict:
        layout = self.tmp / f"layout-{repo.replace('/', '_')}-{tag}"
        write_oci_layout(layout, tag, layers)
        run("skopeo", "copy", "--dest-creds", f"AWS:{self.password}", "--dest-tls-verify=false",
            f"oci:{layout}:{tag}", f"docker://{self.server.address}/{repo}:{tag}")
        # The digests as stored (skopeo may rewrite the config or layers).
        r = self.reg("GET", f"/v2/{repo}/manifests/{tag}", headers={"Accept": OCI_MANIFEST})
        assert r.status_code == 200, r.text
        m = r.json()
        return {"config": m["config"]["digest"], "layers": [l["digest"] for l in m["layers"]]}

    def blob(self, repo: str, digest: str):
        return self.reg("GET", f"/v2/{repo}/blobs/{digest}")

    def sweeps(self) -> int:
        return self.server.log_path.read_text(errors="replace").count("registry gc sweep done")

    def wait_sweeps(self, n: int) -> None:
        start = self.sweeps()
        berthlib.wait_for(lambda: self.sweeps() >= start + n, timeout=60, interval=0.2,
                          what=f"{n} gc sweeps")

    def wait_collected(self, repo: str, digest: str) -> None:
        berthlib.wait_for(lambda: not self.path(digest).exists(), timeout=GRACE + 60, interval=0.5,
                          what=f"gc of {digest}")
        r = self.blob(repo, digest)
        assert r.status_code == 404, r.text
        assert oci_error(r) == "BLOB_UNKNOWN"

    def assert_present(self, repo: str, digest: str) -> None:
        assert self.path(digest).exists(), digest
        r = self.blob(repo, digest)
        assert r.status_code == 200, r.text
        assert "sha256:" + hashlib.sha256(r.content).hexdigest() == digest


@pytest.fixture
def gc(gc_server, tmp_path):
    return Gc(gc_server, tmp_path)


def test_deleted_images_lose_their_blobs_but_shared_and_fresh_blobs_stay(gc, unique):
    repo = f"gc/{unique('app')}"
    gc.aws("ecr", "create-repository", "--repository-name", repo)
    shared = _layer("shared", os.urandom(300_000))
    a = gc.push(repo, "a", [shared, _layer("a", os.urandom(200_000))])
    b = gc.push(repo, "b", [shared, _layer("b", os.urandom(200_000))])
    assert a["layers"][0] == b["layers"][0]
    only_a = [a["config"], a["layers"][1]]
    for d in only_a:
        gc.assert_present(repo, d)

    # An upload in flight: started and half sent; finished after the sweeps.
    in_flight = os.urandom(100_000)
    r = gc.reg("POST", f"/v2/{repo}/blobs/uploads/")
    assert r.status_code == 202, r.text
    location = r.headers["Location"]
    r = gc.reg("PATCH", location, data=in_flight[:50_000],
               headers={"Content-Range": "0-49999"})
    assert r.status_code == 202, r.text
    location = r.headers["Location"]

    deleted = gc.aws("ecr", "batch-delete-image", "--repository-name", repo, "--image-ids", "imageTag=a")
    assert [i["imageTag"] for i in deleted["imageIds"]] == ["a"] and not deleted["failures"]
    for d in only_a:
        gc.wait_collected(repo, d)

    # A blob uploaded just now, which no manifest names (yet), survives
    # sweeps inside its grace period.
    fresh = gc.reg.push_blob(repo, os.urandom(120_000))
    gc.wait_sweeps(2)
    gc.assert_present(repo, fresh)
    # So does everything image b needs, and b pulls whole.
    for d in [b["config"], *b["layers"]]:
        gc.assert_present(repo, d)
    out = gc.tmp / "pulled"
    run("skopeo", "copy", "--src-creds", f"AWS:{gc.password}", "--src-tls-verify=false",
        f"docker://{gc.server.address}/{repo}:b", f"oci:{out}:b")
    # The upload in flight finishes and is intact.
    r = gc.reg("PUT", f"{location}{'&' if '?' in location else '?'}digest={sha256(in_flight)}",
               data=in_flight[50_000:])
    assert r.status_code == 201, r.text
    gc.assert_present(repo, sha256(in_flight))
    # The manifest of a is gone for good: pushing it again needs its blobs.
    r = gc.reg("HEAD", f"/v2/{repo}/blobs/{a['layers'][1]}")
    assert r.status_code == 404


def test_manifest_delete_and_forced_repository_delete_free_blobs(gc, unique):
    repo = f"gc/{unique('del')}"
    doomed = f"gc/{unique('doomed')}"
    for name in (repo, doomed):
        gc.aws("ecr", "create-repository", "--repository-name", name)
    keep = gc.push(repo, "keep", [_layer("k", os.urandom(50_000))])
    drop = gc.push(repo, "drop", [_layer("d", os.urandom(50_000))])
    manifest = gc.reg("HEAD", f"/v2/{repo}/manifests/drop").headers["Docker-Content-Digest"]
    assert gc.reg("DELETE", f"/v2/{repo}/manifests/{manifest}").status_code == 202
    gone = gc.push(doomed, "x", [_layer("x", os.urandom(50_000))])
    gc.aws("ecr", "delete-repository", "--repository-name", doomed, "--force")
    for d in [drop["config"], *drop["layers"]]:
        gc.wait_collected(repo, d)
    for d in gone["layers"]:
        berthlib.wait_for(lambda: not gc.path(d).exists(), timeout=GRACE + 60, interval=0.5,
                          what=f"gc of {d}")
    for d in [keep["config"], *keep["layers"]]:
        gc.assert_present(repo, d)
