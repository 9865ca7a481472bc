"""Error cases: validation errors of the ECS operations, and the protocol and
authentication errors of the edge, with the exact `__type`, HTTP status and
a request id."""

import datetime
import json

import pytest

import berthlib
from berthlib import (
    ECS_TARGET_PREFIX,
    JSON_CONTENT_TYPE,
    REGION,
    ROOT_ACCESS_KEY_ID,
    ROOT_SECRET_ACCESS_KEY,
    assert_client_error,
    http,
    make_client,
    signed_post,
)


def assert_json_error(resp, code, status=None):
    assert resp.headers.get("x-amzn-RequestId"), f"no x-amzn-RequestId header: {dict(resp.headers)}"
    if status is None:
        assert 400 <= resp.status_code < 500, f"{code}: HTTP {resp.status_code}"
    else:
        assert resp.status_code == status, f"{code}: HTTP {resp.status_code}, expected {status}"
    body = resp.json()
    assert body.get("__type", "").split("#")[-1].split(":")[0] == code, body
    assert isinstance(body.get("message", body.get("Message")), str), body
    return body


# --------------------------------------------------------------------------
# Validation errors of the operations


def container(name="app", **kw):
    return {"name": name, "image": "busybox", "memory": 64, **kw}


@pytest.mark.parametrize(
    "request_kw",
    [
        pytest.param({"family": "bad family!", "containerDefinitions": [container()]}, id="bad-family-name"),
        pytest.param({"family": "f" * 256, "containerDefinitions": [container()]}, id="family-too-long"),
        pytest.param({"family": "ok", "cpu": "1.5 potatoes", "memory": "512", "containerDefinitions": [container()]}, id="bad-cpu"),
        pytest.param({"family": "ok", "memory": "lots", "containerDefinitions": [container()]}, id="bad-memory"),
        pytest.param({"family": "ok", "containerDefinitions": [container("web"), container("web")]}, id="duplicate-container-names"),
        pytest.param({"family": "ok", "cpu": "256", "memory": "1024", "containerDefinitions": [container(memory=2048)]},
                     id="container-memory-above-task"),
        pytest.param({"family": "ok", "cpu": "256", "memory": "512", "containerDefinitions": [container(cpu=512)]},
                     id="container-cpu-above-task"),
        pytest.param({"family": "ok", "containerDefinitions": [{"name": "app", "image": "busybox"}]}, id="no-memory-anywhere"),
        pytest.param({"family": "ok", "containerDefinitions": []}, id="no-containers"),
        pytest.param({"family": "ok", "containerDefinitions": [container(portMappings=[{"containerPort": 70000}])]},
                     id="port-out-of-range"),
        pytest.param({"family": "ok", "networkMode": "bridge", "requiresCompatibilities": ["FARGATE"], "cpu": "256",
                      "memory": "512", "containerDefinitions": [container()]}, id="fargate-needs-awsvpc"),
    ],
)
def test_register_task_definition_validation(ecs, unique, request_kw):
    kw = dict(request_kw)
    if kw["family"] == "ok":
        kw["family"] = unique("invalid")
    assert_client_error(lambda: ecs.register_task_definition(**kw), "ClientException", 400)
    if kw["family"] != "bad family!" and len(kw["family"]) <= 255:
        # Nothing was registered.
        assert ecs.list_task_definitions(familyPrefix=kw["family"])["taskDefinitionArns"] == []


def test_validation_error_through_cli(aws, tmp_path):
    err = aws.fail(
        "ecs", "register-task-definition", "--family", "bad family!",
        "--container-definitions", json.dumps([container()]),
    )
    assert err.code == "ClientException", err.stderr
    assert err.operation == "RegisterTaskDefinition"
    err = aws.fail(
        "ecs", "register-task-definition", "--family", "cpu-check", "--cpu", "1.5 potatoes", "--memory", "512",
        "--container-definitions", json.dumps([container()]),
    )
    assert err.code == "ClientException", err.stderr


def test_unknown_cluster_error(ecs, unique):
    err = assert_client_error(lambda: ecs.delete_cluster(cluster=unique("ghost")), "ClusterNotFoundException", 400)
    assert err["Error"]["Message"]


def test_error_wire_shape(endpoint):
    resp = signed_post(endpoint, ECS_TARGET_PREFIX + "DeleteCluster", json.dumps({"cluster": "no-such-cluster-xyz"}))
    body = assert_json_error(resp, "ClusterNotFoundException", 400)
    assert resp.headers["Content-Type"].startswith(JSON_CONTENT_TYPE)
    assert body["__type"] == "ClusterNotFoundException"


# --------------------------------------------------------------------------
# Protocol errors


def test_signed_raw_request_succeeds(endpoint):
    """The control for the tests below: the same raw request, correctly signed, works."""
    resp = signed_post(endpoint, ECS_TARGET_PREFIX + "ListClusters", "{}")
    assert resp.status_code == 200, resp.text
    assert resp.headers.get("x-amzn-RequestId")
    assert isinstance(resp.json()["clusterArns"], list)


def test_malformed_json_body(endpoint):
    resp = signed_post(endpoint, ECS_TARGET_PREFIX + "CreateCluster", '{"clusterName": ')
    assert_json_error(resp, "SerializationException", 400)


def test_wrong_member_type(endpoint):
    resp = signed_post(endpoint, ECS_TARGET_PREFIX + "CreateCluster", '{"clusterName": 42}')
    assert_json_error(resp, "SerializationException", 400)


def test_unknown_operation(endpoint):
    resp = signed_post(endpoint, ECS_TARGET_PREFIX + "FrobnicateCluster", "{}")
    assert_json_error(resp, "UnknownOperationException", 400)


def test_unknown_target_prefix(endpoint):
    resp = signed_post(endpoint, "SomeOtherService_20200101.ListClusters", "{}")
    assert_json_error(resp, "UnknownOperationException", 400)


# --------------------------------------------------------------------------
# Authentication errors


def test_unsigned_request(endpoint):
    resp = http().post(
        endpoint + "/",
        data="{}",
        headers={"Content-Type": JSON_CONTENT_TYPE, "X-Amz-Target": ECS_TARGET_PREFIX + "ListClusters"},
        timeout=10,
    )
    assert_json_error(resp, "MissingAuthenticationTokenException")


def test_malformed_authorization_header(endpoint):
    resp = http().post(
        endpoint + "/",
        data="{}",
        headers={
            "Content-Type": JSON_CONTENT_TYPE,
            "X-Amz-Target": ECS_TARGET_PREFIX + "ListClusters",
            "X-Amz-Date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ"),
            "Authorization": "AWS4-HMAC-SHA256 this-is-not-a-signature",
        },
        timeout=10,
    )
    assert_json_error(resp, "IncompleteSignatureException")


def test_wrong_secret(endpoint):
    ecs = make_client("ecs", endpoint, ROOT_ACCESS_KEY_ID, "not-the-secret-" + "x" * 25)
    err = assert_client_error(lambda: ecs.list_clusters(), "InvalidSignatureException", None)
    assert 400 <= err["ResponseMetadata"]["HTTPStatusCode"] < 500


def test_unknown_access_key(endpoint):
    ecs = make_client("ecs", endpoint, "AKIAUNKNOWNUNKNOWN00", ROOT_SECRET_ACCESS_KEY)
    err = assert_client_error(lambda: ecs.list_clusters(), "UnrecognizedClientException", None)
    assert 400 <= err["ResponseMetadata"]["HTTPStatusCode"] < 500


def test_wrong_secret_cli(berth, tmp_path):
    cli = berth.aws(tmp_path, credentials=(ROOT_ACCESS_KEY_ID, "wrong-secret-wrong-secret-wrong-secret00"))
    err = cli.fail("ecs", "list-clusters")
    assert err.code == "InvalidSignatureException", err.stderr


def test_body_tampered_after_signing(endpoint):
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    req = AWSRequest(
        method="POST", url=endpoint + "/", data='{"clusterName": "signed"}',
        headers={"Content-Type": JSON_CONTENT_TYPE, "X-Amz-Target": ECS_TARGET_PREFIX + "CreateCluster"},
    )
    SigV4Auth(Credentials(ROOT_ACCESS_KEY_ID, ROOT_SECRET_ACCESS_KEY), "ecs", REGION).add_auth(req)
    prepared = req.prepare()
    resp = http().post(prepared.url, data='{"clusterName": "tampered"}', headers=dict(prepared.headers), timeout=10)
    assert_json_error(resp, "InvalidSignatureException")


@pytest.mark.parametrize(
    "minutes,message",
    [(-20, "Signature expired"), (20, "Signature not yet current")],
    ids=["20-minutes-late", "20-minutes-early"],
)
def test_clock_skew_over_15_minutes(endpoint, monkeypatch, minutes, message):
    resp = signed_post(
        endpoint, ECS_TARGET_PREFIX + "ListClusters", "{}",
        skew=datetime.timedelta(minutes=minutes), monkeypatch=monkeypatch,
    )
    body = assert_json_error(resp, "InvalidSignatureException")
    assert message in body.get("message", body.get("Message", "")), body


def test_clock_skew_within_15_minutes_is_fine(endpoint, monkeypatch):
    resp = signed_post(
        endpoint, ECS_TARGET_PREFIX + "ListClusters", "{}",
        skew=datetime.timedelta(minutes=-10), monkeypatch=monkeypatch,
    )
    assert resp.status_code == 200, resp.text


@pytest.mark.parametrize(
    "scope", [{"region": "eu-west-3"}, {"service": "ecr"}], ids=["wrong-region", "wrong-service"]
)
def test_signature_scoped_elsewhere(endpoint, scope):
    resp = signed_post(endpoint, ECS_TARGET_PREFIX + "ListClusters", "{}", **scope)
    assert_json_error(resp, "InvalidSignatureException")


def test_wire_timestamps_are_epoch_seconds(ecs, endpoint, unique):
    family = unique("wire")
    ecs.register_task_definition(family=family, containerDefinitions=[container()])
    resp = signed_post(endpoint, ECS_TARGET_PREFIX + "DescribeTaskDefinition", json.dumps({"taskDefinition": family}))
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"].startswith(JSON_CONTENT_TYPE)
    registered_at = resp.json()["taskDefinition"]["registeredAt"]
    assert isinstance(registered_at, (int, float)) and not isinstance(registered_at, bool), registered_at
    assert abs(registered_at - datetime.datetime.now(datetime.timezone.utc).timestamp()) < 300


def test_sts_errors_in_sts_spelling(endpoint):
    sts = make_client("sts", endpoint, ROOT_ACCESS_KEY_ID, "not-the-secret-" + "y" * 25)
    assert_client_error(lambda: sts.get_caller_identity(), "SignatureDoesNotMatch", 403)
    sts = make_client("sts", endpoint, "AKIAUNKNOWNUNKNOWN00", ROOT_SECRET_ACCESS_KEY)
    assert_client_error(lambda: sts.get_caller_identity(), "InvalidClientTokenId", 403)


def test_request_ids_are_unique(ecs, unique):
    ids = set()
    for _ in range(3):
        try:
            ecs.delete_cluster(cluster=unique("ghost"))
        except berthlib.ClientError as e:
            ids.add(e.response["ResponseMetadata"]["RequestId"])
    ids.add(ecs.list_clusters()["ResponseMetadata"]["RequestId"])
    assert len(ids) == 4, ids


# --------------------------------------------------------------------------
# Parameter validation shared by the operations


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda ecs: ecs.list_clusters(maxResults=0), id="maxResults-0"),
        pytest.param(lambda ecs: ecs.list_clusters(maxResults=101), id="maxResults-101"),
        pytest.param(lambda ecs: ecs.list_clusters(nextToken="not-a-token"), id="bad-nextToken"),
        pytest.param(lambda ecs: ecs.list_task_definitions(sort="SIDEWAYS"), id="bad-sort"),
        pytest.param(lambda ecs: ecs.list_task_definition_families(status="WEIRD"), id="bad-family-status"),
        pytest.param(lambda ecs: ecs.describe_clusters(clusters=["default"], include=["BOGUS"]), id="bad-include"),
        pytest.param(lambda ecs: ecs.create_cluster(clusterName="bad name!"), id="bad-cluster-name"),
        pytest.param(lambda ecs: ecs.create_cluster(clusterName="c" * 256), id="cluster-name-too-long"),
        pytest.param(lambda ecs: ecs.create_cluster(clusterName="s", settings=[{"name": "containerInsights", "value": "sometimes"}]),
                     id="bad-cluster-setting"),
    ],
)
def test_invalid_parameters(ecs, call):
    assert_client_error(lambda: call(ecs), "InvalidParameterException", 400)


def test_fargate_task_definitions(ecs, unique):
    family = unique("fargate")
    td = ecs.register_task_definition(
        family=family, networkMode="awsvpc", requiresCompatibilities=["FARGATE"], cpu="256", memory="512",
        containerDefinitions=[{"name": "app", "image": "busybox", "portMappings": [{"containerPort": 8080}]}],
    )["taskDefinition"]
    assert "FARGATE" in td["compatibilities"], td["compatibilities"]
    assert (td["networkMode"], td["cpu"], td["memory"]) == ("awsvpc", "256", "512")
    # In awsvpc mode the host port is the container port.
    assert td["containerDefinitions"][0]["portMappings"][0]["hostPort"] == 8080
    for bad in (
        {"cpu": "256", "memory": "4096"},  # not a Fargate size
        {"memory": "512"},  # Fargate needs task cpu
    ):
        assert_client_error(
            lambda: ecs.register_task_definition(
                family=family, networkMode="awsvpc", requiresCompatibilities=["FARGATE"],
                containerDefinitions=[{"name": "app", "image": "busybox"}], **bad,
            ),
            "ClientException",
        )
    assert ecs.describe_task_definition(taskDefinition=family)["taskDefinition"]["revision"] == 1
