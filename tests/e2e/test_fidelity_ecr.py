"""Fidelity of Berth's ECR API to AWS's (issue 14's audit), with boto3 and
the aws CLI.

The contract check calls every implemented ECR operation with boto3 and
compares each response with the output shape of botocore's own ECR model:
every member Berth returns must exist in the model (recursively), and every
member AWS returns for the same request (the table `RETURNED`, each path
itself checked against the model) must be there. ECR's model marks no
output member as required, so `RETURNED` is what makes a member that goes
missing fail the suite.
"""

from __future__ import annotations

import hashlib
import json
import uuid

import botocore.session
import pytest

import berthlib

OTHER_ACCOUNT = "111122223333"

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"

POLICY = json.dumps({"rules": [{
    "rulePriority": 1, "description": "keep one",
    "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 1},
    "action": {"type": "expire"}}]})

REPO_POLICY = json.dumps({"Version": "2012-10-17", "Statement": [{
    "Sid": "pull", "Effect": "Allow", "Principal": {"AWS": berthlib.ROOT_ARN},
    "Action": ["ecr:BatchGetImage"]}]})

_REPO = ["repositoryArn", "registryId", "repositoryName", "repositoryUri", "createdAt",
         "imageTagMutability", "imageScanningConfiguration.scanOnPush",
         "encryptionConfiguration.encryptionType"]

# The members AWS returns, for the requests below, per operation ("[]" steps
# into every element of a list).
RETURNED: dict[str, list[str]] = {
    "CreateRepository": [f"repository.{m}" for m in _REPO],
    "DescribeRepositories": [f"repositories[].{m}" for m in _REPO],
    "GetAuthorizationToken": ["authorizationData[].authorizationToken", "authorizationData[].expiresAt",
                              "authorizationData[].proxyEndpoint"],
    "InitiateLayerUpload": ["uploadId", "partSize"],
    "UploadLayerPart": ["registryId", "repositoryName", "uploadId", "lastByteReceived"],
    "CompleteLayerUpload": ["registryId", "repositoryName", "uploadId", "layerDigest"],
    "BatchCheckLayerAvailability": ["layers[].layerDigest", "layers[].layerAvailability",
                                    "layers[].layerSize", "layers[].mediaType", "failures"],
    "PutImage": ["image.registryId", "image.repositoryName", "image.imageId.imageDigest",
                 "image.imageId.imageTag", "image.imageManifest", "image.imageManifestMediaType"],
    "ListImages": ["imageIds[].imageDigest", "imageIds[].imageTag"],
    "DescribeImages": ["imageDetails[].registryId", "imageDetails[].repositoryName",
                       "imageDetails[].imageDigest", "imageDetails[].imageTags",
                       "imageDetails[].imageSizeInBytes", "imageDetails[].imagePushedAt",
                       "imageDetails[].imageManifestMediaType", "imageDetails[].artifactMediaType"],
    "BatchGetImage": ["images[].registryId", "images[].repositoryName", "images[].imageId.imageDigest",
                      "images[].imageId.imageTag", "images[].imageManifest",
                      "images[].imageManifestMediaType", "failures"],
    "GetDownloadUrlForLayer": ["downloadUrl", "layerDigest"],
    "PutImageTagMutability": ["registryId", "repositoryName", "imageTagMutability"],
    "PutImageScanningConfiguration": ["registryId", "repositoryName",
                                      "imageScanningConfiguration.scanOnPush"],
    "SetRepositoryPolicy": ["registryId", "repositoryName", "policyText"],
    "GetRepositoryPolicy": ["registryId", "repositoryName", "policyText"],
    "DeleteRepositoryPolicy": ["registryId", "repositoryName", "policyText"],
    "TagResource": [],
    "UntagResource": [],
    "ListTagsForResource": ["tags[].Key", "tags[].Value"],
    "DescribeRegistry": ["registryId", "replicationConfiguration.rules"],
    "PutLifecyclePolicy": ["registryId", "repositoryName", "lifecyclePolicyText"],
    "GetLifecyclePolicy": ["registryId", "repositoryName", "lifecyclePolicyText", "lastEvaluatedAt"],
    "StartLifecyclePolicyPreview": ["registryId", "repositoryName", "lifecyclePolicyText", "status"],
    "GetLifecyclePolicyPreview": ["registryId", "repositoryName", "lifecyclePolicyText", "status",
                                  "previewResults[].imageDigest", "previewResults[].imageTags",
                                  "previewResults[].imagePushedAt", "previewResults[].action.type",
                                  "previewResults[].appliedRulePriority",
                                  "summary.expiringImageTotalCount"],
    "DeleteLifecyclePolicy": ["registryId", "repositoryName", "lifecyclePolicyText", "lastEvaluatedAt"],
    "BatchDeleteImage": ["imageIds[].imageDigest", "imageIds[].imageTag", "failures"],
    "DeleteRepository": [f"repository.{m}" for m in _REPO],
}


@pytest.fixture(scope="module")
def model():
    return botocore.session.get_session().get_service_model("ecr")


@pytest.fixture(scope="module")
def ecr(berth):
    return berth.client("ecr")


def _steps(path: str) -> list[str]:
    return [s for s in path.replace("[]", ".[]").split(".") if s]


def _model_has(shape, path: str) -> bool:
    for step in _steps(path):
        if step == "[]":
            if shape.type_name != "list":
                return False
            shape = shape.member
        elif shape.type_name == "structure" and step in shape.members:
            shape = shape.members[step]
        else:
            return False
    return True


def _present(value, steps: list[str]) -> bool:
    if not steps:
        return True
    step, rest = steps[0], steps[1:]
    if step == "[]":
        return isinstance(value, list) and bool(value) and all(_present(v, rest) for v in value)
    return isinstance(value, dict) and step in value and _present(value[step], rest)


def _unknown_members(value, shape, path: str) -> list[str]:
    """Members of `value` that the model's `shape` does not have."""
    out: list[str] = []
    if shape.type_name == "structure" and isinstance(value, dict):
        for k, v in value.items():
            if k not in shape.members:
                out.append(f"{path}.{k}")
            else:
                out += _unknown_members(v, shape.members[k], f"{path}.{k}")
    elif shape.type_name == "list" and isinstance(value, list):
        for v in value:
            out += _unknown_members(v, shape.member, f"{path}[]")
    elif shape.type_name == "map" and isinstance(value, dict):
        for v in value.values():
            out += _unknown_members(v, shape.value, f"{path}{{}}")
    return out


class Contract:
    def __init__(self, ecr, model):
        self.ecr, self.model = ecr, model
        self.missing: list[str] = []
        self.unknown: list[str] = []
        self.seen: set[str] = set()

    def __call__(self, operation: str, expect: list[str] | None = None, **params):
        """Calls `operation`; checks the members of `RETURNED` (or `expect`)."""
        method = getattr(self.ecr, botocore.xform_name(operation))
        resp = method(**params)
        resp.pop("ResponseMetadata", None)
        shape = self.model.operation_model(operation).output_shape
        self.seen.add(operation)
        self.unknown += [f"{operation}: {p}" for p in _unknown_members(resp, shape, "$")] if shape else []
        for path in RETURNED[operation] if expect is None else expect:
            assert _model_has(shape, path), f"{operation}: {path} is not in the model's output"
            if not _present(resp, _steps(path)):
                self.missing.append(f"{operation}: {path}")
        return resp


def _upload(call, repo: str, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    up = call("InitiateLayerUpload", repositoryName=repo)
    call("UploadLayerPart", repositoryName=repo, uploadId=up["uploadId"], partFirstByte=0,
         partLastByte=len(data) - 1, layerPartBlob=data)
    call("CompleteLayerUpload", repositoryName=repo, uploadId=up["uploadId"], layerDigests=[digest])
    return digest


def test_every_output_member_aws_returns_is_there(ecr, model):
    call = Contract(ecr, model)
    repo = f"fidelity/{uuid.uuid4().hex[:10]}"
    created = call("CreateRepository", repositoryName=repo, tags=[{"Key": "team", "Value": "berth"}])
    arn = created["repository"]["repositoryArn"]
    call("DescribeRepositories", repositoryNames=[repo])
    call("GetAuthorizationToken")

    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    layer = b"fidelity layer " + uuid.uuid4().hex.encode()
    cfg_digest = _upload(call, repo, config)
    layer_digest = _upload(call, repo, layer)
    call("BatchCheckLayerAvailability", repositoryName=repo, layerDigests=[layer_digest])
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": DOCKER_CONFIG, "size": len(config), "digest": cfg_digest},
        "layers": [{"mediaType": DOCKER_LAYER, "size": len(layer), "digest": layer_digest}],
    })
    call("PutImage", repositoryName=repo, imageManifest=manifest, imageTag="v1")
    # A second image, so the lifecycle preview (keep one) expires one.
    layer2 = layer + b" two"
    layer2_digest = _upload(call, repo, layer2)
    call("PutImage", repositoryName=repo, imageTag="v2", imageManifest=manifest.replace(
        layer_digest, layer2_digest).replace(f'"size": {len(layer)}', f'"size": {len(layer2)}'))
    call("ListImages", repositoryName=repo)
    call("DescribeImages", repositoryName=repo)
    call("BatchGetImage", repositoryName=repo, imageIds=[{"imageTag": "v1"}])
    call("BatchGetImage", repositoryName=repo, imageIds=[{"imageTag": "absent"}],
         expect=["failures[].imageId.imageTag", "failures[].failureCode", "failures[].failureReason"])
    call("BatchCheckLayerAvailability", repositoryName=repo, layerDigests=["sha256:" + "0" * 64],
         expect=["failures[].layerDigest", "failures[].failureCode", "failures[].failureReason"])
    call("GetDownloadUrlForLayer", repositoryName=repo, layerDigest=layer_digest)

    call("PutImageTagMutability", repositoryName=repo, imageTagMutability="MUTABLE")
    call("PutImageScanningConfiguration", repositoryName=repo,
         imageScanningConfiguration={"scanOnPush": False})
    call("SetRepositoryPolicy", repositoryName=repo, policyText=REPO_POLICY)
    call("GetRepositoryPolicy", repositoryName=repo)
    call("DeleteRepositoryPolicy", repositoryName=repo)
    call("TagResource", resourceArn=arn, tags=[{"Key": "tier", "Value": "gold"}])
    call("UntagResource", resourceArn=arn, tagKeys=["tier"])
    call("ListTagsForResource", resourceArn=arn)
    call("DescribeRegistry")

    call("PutLifecyclePolicy", repositoryName=repo, lifecyclePolicyText=POLICY)
    call("GetLifecyclePolicy", repositoryName=repo)
    call("StartLifecyclePolicyPreview", repositoryName=repo)
    call("GetLifecyclePolicyPreview", repositoryName=repo)
    call("DeleteLifecyclePolicy", repositoryName=repo)

    call("BatchDeleteImage", repositoryName=repo, imageIds=[{"imageTag": "v1"}])
    call("DeleteRepository", repositoryName=repo, force=True)

    assert call.seen == set(RETURNED), "an operation of the table was not called"
    assert not call.unknown, "members the ECR model does not have:\n" + "\n".join(call.unknown)
    assert not call.missing, "members AWS returns that Berth omits:\n" + "\n".join(call.missing)


def test_lifecycle_policy_always_has_last_evaluated_at(aws):
    repo = f"fidelity/{uuid.uuid4().hex[:10]}"
    aws("ecr", "create-repository", "--repository-name", repo)
    aws("ecr", "put-lifecycle-policy", "--repository-name", repo, "--lifecycle-policy-text", POLICY)
    # Before the first evaluation ECR answers the epoch.
    got = aws("ecr", "get-lifecycle-policy", "--repository-name", repo)
    assert "lastEvaluatedAt" in got, got
    deleted = aws("ecr", "delete-lifecycle-policy", "--repository-name", repo)
    assert "lastEvaluatedAt" in deleted, deleted
    aws("ecr", "delete-repository", "--repository-name", repo, "--force")


def test_another_accounts_registry_returns_none_of_ours(aws, ecr):
    repo = f"fidelity/{uuid.uuid4().hex[:10]}"
    aws("ecr", "create-repository", "--repository-name", repo)
    assert aws("ecr", "describe-repositories", "--registry-id", OTHER_ACCOUNT)["repositories"] == []
    mine = aws("ecr", "describe-repositories", "--registry-id", berthlib.ACCOUNT_ID)["repositories"]
    assert repo in [r["repositoryName"] for r in mine]

    err = aws.fail("ecr", "describe-repositories", "--registry-id", OTHER_ACCOUNT, "--repository-names", repo)
    assert err.code == "RepositoryNotFoundException" and OTHER_ACCOUNT in err.message, err
    err = aws.fail("ecr", "list-images", "--registry-id", OTHER_ACCOUNT, "--repository-name", repo)
    assert err.code == "RepositoryNotFoundException" and OTHER_ACCOUNT in err.message, err
    for op, extra in [("describe_images", {}), ("get_repository_policy", {}),
                      ("get_lifecycle_policy", {}), ("batch_get_image", {"imageIds": [{"imageTag": "x"}]}),
                      ("delete_repository", {})]:
        with pytest.raises(ecr.exceptions.RepositoryNotFoundException):
            getattr(ecr, op)(registryId=OTHER_ACCOUNT, repositoryName=repo, **extra)
    # The delete above named another registry: ours is still there.
    aws("ecr", "describe-repositories", "--repository-names", repo)

    err = aws.fail("ecr", "create-repository", "--registry-id", OTHER_ACCOUNT, "--repository-name", "theirs")
    assert err.code == "InvalidParameterException", err
    # botocore does not check the model's pattern ([0-9]{12}): Berth does.
    err = aws.fail("ecr", "list-images", "--registry-id", "not-an-account", "--repository-name", repo)
    assert err.code == "InvalidParameterException", err
    aws("ecr", "delete-repository", "--repository-name", repo, "--force")


# A valid value for each required input member of the operations below.
_SAMPLE = {
    "layerDigests": ["sha256:" + "0" * 64],
    "layerDigest": "sha256:" + "0" * 64,
    "imageIds": [{"imageTag": "v1"}],
    "lifecyclePolicyText": POLICY,
    "policyText": REPO_POLICY,
    "layerPartBlob": b"part",
    "partFirstByte": 0,
    "partLastByte": 3,
    "uploadId": str(uuid.uuid4()),
    "imageManifest": "{}",
    "imageTagMutability": "MUTABLE",
    "imageScanningConfiguration": {"scanOnPush": False},
}


def test_every_operation_with_a_registry_id_keeps_to_its_registry(ecr, model):
    """Each implemented operation whose model input has `registryId`, asked
    about another account's registry, answers as for a repository that is
    not there (CreateRepository: refused), never with this registry's data."""
    repo = f"fidelity/{uuid.uuid4().hex[:10]}"
    ecr.create_repository(repositoryName=repo)
    ecr.put_lifecycle_policy(repositoryName=repo, lifecyclePolicyText=POLICY)
    ecr.set_repository_policy(repositoryName=repo, policyText=REPO_POLICY)
    checked = []
    for op in sorted(RETURNED):
        shape = model.operation_model(op).input_shape
        if shape is None or "registryId" not in shape.members:
            continue
        params = {k: _SAMPLE[k] for k in shape.required_members if k != "repositoryName"}
        params["registryId"] = OTHER_ACCOUNT
        method = getattr(ecr, botocore.xform_name(op))
        if op == "DescribeRepositories":
            assert method(**params)["repositories"] == [], op
            params["repositoryNames"] = [repo]
        else:
            params["repositoryName"] = repo if op != "CreateRepository" else f"{repo}-theirs"
        code = "InvalidParameterException" if op == "CreateRepository" else "RepositoryNotFoundException"
        with pytest.raises(ecr.exceptions.ClientError) as err:
            method(**params)
        assert err.value.response["Error"]["Code"] == code, (op, err.value.response["Error"])
        if code == "RepositoryNotFoundException":
            assert OTHER_ACCOUNT in err.value.response["Error"]["Message"], op
        checked.append(op)
    assert len(checked) >= 20, checked
    # Nothing in our registry changed.
    ecr.get_lifecycle_policy(repositoryName=repo)
    ecr.get_repository_policy(repositoryName=repo)
    ecr.delete_repository(repositoryName=repo, force=True)
    assert not [r for r in ecr.describe_repositories()["repositories"]
                if r["repositoryName"] == f"{repo}-theirs"]
