"""Attributes on container instances: PutAttributes, ListAttributes,
DeleteAttributes (the instance itself is registered through boto3, as an
agent would)."""

import pytest

from berthlib import ACCOUNT_ID, assert_client_error


@pytest.fixture
def instance(ecs, unique):
    cluster = unique("attrs")
    ecs.create_cluster(clusterName=cluster)
    ci = ecs.register_container_instance(
        cluster=cluster,
        totalResources=[
            {"name": "CPU", "type": "INTEGER", "integerValue": 2048},
            {"name": "MEMORY", "type": "INTEGER", "integerValue": 4096},
        ],
        attributes=[{"name": "custom.zone", "value": "zone-a"}],
    )["containerInstance"]
    return cluster, ci["containerInstanceArn"]


def test_put_list_delete_attributes_cli(aws, ecs, instance):
    cluster, arn = instance
    instance_id = arn.rsplit("/", 1)[1]

    put = aws(
        "ecs", "put-attributes", "--cluster", cluster, "--attributes",
        f"name=stack,value=prod,targetType=container-instance,targetId={arn}",
        f"name=flag,targetType=container-instance,targetId={instance_id}",
    )
    assert sorted(a["name"] for a in put["attributes"]) == ["flag", "stack"]

    listed_stack, listed_prod, listed_dev, listed_all = aws.parallel(
        ["ecs", "list-attributes", "--cluster", cluster, "--target-type", "container-instance", "--attribute-name", "stack"],
        ["ecs", "list-attributes", "--cluster", cluster, "--target-type", "container-instance",
         "--attribute-name", "stack", "--attribute-value", "prod"],
        ["ecs", "list-attributes", "--cluster", cluster, "--target-type", "container-instance",
         "--attribute-name", "stack", "--attribute-value", "dev"],
        ["ecs", "list-attributes", "--cluster", cluster, "--target-type", "container-instance"],
    )
    assert [(a["name"], a["value"], a["targetType"], a["targetId"]) for a in listed_stack["attributes"]] == [
        ("stack", "prod", "container-instance", arn)
    ]
    assert [a["name"] for a in listed_prod["attributes"]] == ["stack"]
    assert listed_dev["attributes"] == []
    names = {a["name"] for a in listed_all["attributes"]}
    assert {"stack", "flag", "custom.zone"} <= names, names

    # The instance itself carries them.
    described = ecs.describe_container_instances(cluster=cluster, containerInstances=[arn])["containerInstances"][0]
    attrs = {a["name"]: a.get("value") for a in described["attributes"]}
    assert attrs.get("stack") == "prod" and "flag" in attrs and attrs.get("custom.zone") == "zone-a", attrs

    # Putting again replaces the value.
    aws("ecs", "put-attributes", "--cluster", cluster, "--attributes", f"name=stack,value=canary,targetId={arn}")
    got = ecs.list_attributes(cluster=cluster, targetType="container-instance", attributeName="stack")["attributes"]
    assert [(a["name"], a["value"]) for a in got] == [("stack", "canary")]

    deleted = aws("ecs", "delete-attributes", "--cluster", cluster, "--attributes", f"name=stack,targetId={arn}")
    assert [a["name"] for a in deleted["attributes"]] == ["stack"]
    after = ecs.list_attributes(cluster=cluster, targetType="container-instance")["attributes"]
    names = {a["name"] for a in after}
    assert "stack" not in names and "flag" in names, names


def test_attributes_boto3_and_pagination(ecs, instance):
    cluster, arn = instance
    attrs = [{"name": f"k{i}", "value": str(i), "targetType": "container-instance", "targetId": arn} for i in range(5)]
    ecs.put_attributes(cluster=cluster, attributes=attrs)
    seen, token = [], None
    while True:
        resp = ecs.list_attributes(
            cluster=cluster, targetType="container-instance", maxResults=2, **({"nextToken": token} if token else {})
        )
        assert len(resp["attributes"]) <= 2
        seen += resp["attributes"]
        token = resp.get("nextToken")
        if not token:
            break
        assert len(seen) < 100
    names = [a["name"] for a in seen]
    assert len(names) == len(set(names)), names
    assert {f"k{i}" for i in range(5)} <= set(names)

    ecs.delete_attributes(cluster=cluster, attributes=[{"name": "k0", "targetId": arn}])
    left = {a["name"] for p in ecs.get_paginator("list_attributes").paginate(cluster=cluster, targetType="container-instance") for a in p["attributes"]}
    assert "k0" not in left and "k4" in left


def test_put_attributes_unknown_target(aws, ecs, instance):
    cluster, _ = instance
    ghost = f"arn:aws:ecs:us-east-1:{ACCOUNT_ID}:container-instance/{cluster}/00000000000000000000000000000000"
    assert_client_error(
        lambda: ecs.put_attributes(
            cluster=cluster,
            attributes=[{"name": "x", "value": "y", "targetType": "container-instance", "targetId": ghost}],
        ),
        "TargetNotFoundException",
    )
    err = aws.fail("ecs", "put-attributes", "--cluster", cluster, "--attributes", f"name=x,value=y,targetId={ghost}")
    assert err.code == "TargetNotFoundException", err.stderr
    assert err.operation == "PutAttributes"


def test_attributes_unknown_cluster(ecs, unique):
    assert_client_error(
        lambda: ecs.list_attributes(cluster=unique("ghost"), targetType="container-instance"),
        "ClusterNotFoundException",
    )


def test_custom_attribute_limit(ecs, instance):
    cluster, arn = instance  # already carries custom.zone
    nine = [{"name": f"n{i}", "value": "v", "targetType": "container-instance", "targetId": arn} for i in range(9)]
    ecs.put_attributes(cluster=cluster, attributes=nine)
    assert_client_error(
        lambda: ecs.put_attributes(
            cluster=cluster, attributes=[{"name": "eleventh", "targetType": "container-instance", "targetId": arn}]
        ),
        "AttributeLimitExceededException",
    )
    # Replacing the value of an existing attribute is not a new one.
    ecs.put_attributes(cluster=cluster, attributes=[{"name": "n0", "value": "w", "targetId": arn}])
