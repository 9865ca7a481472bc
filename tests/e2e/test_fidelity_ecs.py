"""Where Berth's ECS answers must match ECS's exactly (issue 14's fidelity
audit), through the real aws CLI and boto3: launchType enum validation, a
launch type with a capacity provider strategy, DiscoverPollEndpoint for an
unknown cluster, the EFS rootDirectory default and the ARN of a missing
service."""

import json

import botocore.exceptions
import pytest

BOTH = ("Specifying both a launch type and capacity provider strategy is not supported. "
        "Remove one and try again.")
STRATEGY = json.dumps([{"capacityProvider": "cp", "weight": 1}])


def _setup(aws, unique):
    cluster = unique("fid")
    aws("ecs", "create-cluster", "--cluster-name", cluster)
    family = unique("fid")
    aws("ecs", "register-task-definition", "--family", family, "--container-definitions",
        json.dumps([{"name": "app", "image": "busybox", "memory": 32}]))
    return cluster, family


def _code(ecs, op, **kw):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        getattr(ecs, op)(**kw)
    return e.value.response["Error"]


def test_a_launch_type_outside_the_enum_is_an_invalid_parameter(aws, ecs, unique):
    # boto3 does not validate enums on the client side, so the value reaches
    # Berth as it would reach ECS.
    cluster, family = _setup(aws, unique)
    calls = [
        ("run_task", dict(cluster=cluster, taskDefinition=family, launchType="LAMBDA")),
        ("create_service", dict(cluster=cluster, serviceName="s", taskDefinition=family,
                                desiredCount=1, launchType="LAMBDA")),
        ("list_tasks", dict(cluster=cluster, launchType="LAMBDA")),
        ("list_services", dict(cluster=cluster, launchType="LAMBDA")),
    ]
    for op, kw in calls:
        err = _code(ecs, op, **kw)
        assert err["Code"] == "InvalidParameterException", (op, err)
        assert "launchType" in err["Message"], (op, err)
    # In the enum but not run by Berth: an honest UnsupportedFeatureException.
    err = aws.fail("ecs", "run-task", "--cluster", cluster, "--task-definition", family,
                   "--launch-type", "FARGATE")
    assert err.code == "UnsupportedFeatureException"


def test_a_launch_type_with_a_capacity_provider_strategy_is_refused(aws, unique):
    cluster, family = _setup(aws, unique)
    err = aws.fail("ecs", "run-task", "--cluster", cluster, "--task-definition", family,
                   "--launch-type", "EC2", "--capacity-provider-strategy", STRATEGY)
    assert err.code == "InvalidParameterException" and err.message == BOTH
    err = aws.fail("ecs", "create-service", "--cluster", cluster, "--service-name", "s",
                   "--task-definition", family, "--desired-count", "1",
                   "--launch-type", "EC2", "--capacity-provider-strategy", STRATEGY)
    assert err.code == "InvalidParameterException" and err.message == BOTH


def test_discover_poll_endpoint_answers_for_an_unknown_cluster(aws, berth, unique):
    out = aws("ecs", "discover-poll-endpoint", "--cluster", unique("ghost"),
              "--container-instance", "0123456789abcdef0123456789abcdef")
    assert out["endpoint"] == berth.endpoint + "/"
    out = aws("ecs", "discover-poll-endpoint", "--cluster", unique("ghost"))
    assert out["endpoint"] == berth.endpoint + "/"


def test_an_efs_volume_root_directory_defaults_to_slash(aws, unique):
    family = unique("efs")
    registered = aws("ecs", "register-task-definition", "--family", family, "--container-definitions",
                     json.dumps([{"name": "app", "image": "busybox", "memory": 32}]),
                     "--volumes", json.dumps([
                         {"name": "a", "efsVolumeConfiguration": {"fileSystemId": "fs-1"}},
                         {"name": "b", "efsVolumeConfiguration": {"fileSystemId": "fs-2",
                                                                  "rootDirectory": "/data"}}]))
    described = aws("ecs", "describe-task-definition", "--task-definition", family)
    for doc in (registered, described):
        volumes = doc["taskDefinition"]["volumes"]
        assert volumes[0]["efsVolumeConfiguration"]["rootDirectory"] == "/"
        assert volumes[1]["efsVolumeConfiguration"]["rootDirectory"] == "/data"


def test_a_missing_service_is_reported_by_its_long_arn(aws, unique):
    cluster, _ = _setup(aws, unique)
    arn = aws("ecs", "describe-clusters", "--clusters", cluster)["clusters"][0]["clusterArn"]
    prefix = arn.rsplit(":cluster/", 1)[0]
    out = aws("ecs", "describe-services", "--cluster", cluster, "--services", "ghost")
    assert out["services"] == []
    assert out["failures"] == [{"arn": f"{prefix}:service/{cluster}/ghost", "reason": "MISSING"}]
