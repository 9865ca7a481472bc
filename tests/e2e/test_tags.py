"""Tags: TagResource, UntagResource, ListTagsForResource on a cluster and a
task definition, and ECS's tag rules."""

import pytest

from berthlib import assert_client_error, cluster_arn, tags_dict, task_definition_arn


@pytest.fixture
def cluster(ecs, unique):
    name = unique("tags")
    ecs.create_cluster(clusterName=name, tags=[{"key": "created", "value": "yes"}])
    return cluster_arn(name)


@pytest.fixture
def task_definition(ecs, unique):
    family = unique("tags-td")
    ecs.register_task_definition(
        family=family,
        containerDefinitions=[{"name": "app", "image": "busybox", "memory": 32}],
        tags=[{"key": "created", "value": "yes"}],
    )
    return task_definition_arn(family, 1)


@pytest.mark.parametrize("kind", ["cluster", "task_definition"])
def test_tag_untag_list_cli(aws, request, kind):
    arn = request.getfixturevalue(kind)
    out = aws("ecs", "tag-resource", "--resource-arn", arn, "--tags", "key=a,value=1", "key=b,value=two words")
    assert out == {}
    listed = aws("ecs", "list-tags-for-resource", "--resource-arn", arn)
    assert tags_dict(listed["tags"]) == {"created": "yes", "a": "1", "b": "two words"}

    # A new value for an existing key replaces it; untag removes keys.
    aws("ecs", "tag-resource", "--resource-arn", arn, "--tags", "key=a,value=3")
    aws("ecs", "untag-resource", "--resource-arn", arn, "--tag-keys", "b", "created", "never-there")
    listed = aws("ecs", "list-tags-for-resource", "--resource-arn", arn)
    assert tags_dict(listed["tags"]) == {"a": "3"}


def test_tags_visible_through_describe(ecs, cluster, task_definition):
    ecs.tag_resource(resourceArn=cluster, tags=[{"key": "x", "value": "1"}])
    d = ecs.describe_clusters(clusters=[cluster], include=["TAGS"])["clusters"][0]
    assert tags_dict(d["tags"]) == {"created": "yes", "x": "1"}

    ecs.tag_resource(resourceArn=task_definition, tags=[{"key": "y", "value": "2"}])
    d = ecs.describe_task_definition(taskDefinition=task_definition, include=["TAGS"])
    assert tags_dict(d["tags"]) == {"created": "yes", "y": "2"}


def test_tag_limit_fifty(ecs, unique):
    name = unique("limit")
    arn = ecs.create_cluster(clusterName=name)["cluster"]["clusterArn"]
    fifty_one = [{"key": f"k{i:02d}", "value": str(i)} for i in range(51)]
    assert_client_error(lambda: ecs.tag_resource(resourceArn=arn, tags=fifty_one), "InvalidParameterException")
    assert ecs.list_tags_for_resource(resourceArn=arn)["tags"] == []

    ecs.tag_resource(resourceArn=arn, tags=fifty_one[:50])
    assert len(ecs.list_tags_for_resource(resourceArn=arn)["tags"]) == 50
    # Replacing a value keeps the count at 50 and is allowed...
    ecs.tag_resource(resourceArn=arn, tags=[{"key": "k00", "value": "new"}])
    # ...a 51st key is not, counting the tags already there (the model lists
    # LimitExceededException for TagResource; either refusal will do).
    assert_client_error(
        lambda: ecs.tag_resource(resourceArn=arn, tags=[fifty_one[50]]),
        ("LimitExceededException", "InvalidParameterException"),
    )
    tags = tags_dict(ecs.list_tags_for_resource(resourceArn=arn)["tags"])
    assert len(tags) == 50 and tags["k00"] == "new" and "k50" not in tags

    # The same limit applies when the resource is created.
    assert_client_error(
        lambda: ecs.create_cluster(clusterName=unique("limit2"), tags=fifty_one), "InvalidParameterException"
    )


@pytest.mark.parametrize(
    "tag",
    [
        {"key": "aws:reserved", "value": "x"},
        {"key": "k" * 129, "value": "x"},
        {"key": "ok", "value": "v" * 257},
        {"key": "bad{chars}", "value": "x"},
    ],
    ids=["aws-prefix", "key-too-long", "value-too-long", "bad-characters"],
)
def test_bad_tag_refused(ecs, cluster, tag):
    assert_client_error(lambda: ecs.tag_resource(resourceArn=cluster, tags=[tag]), "InvalidParameterException")
    assert tags_dict(ecs.list_tags_for_resource(resourceArn=cluster)["tags"]) == {"created": "yes"}


def test_bad_tag_on_create_cluster_cli(aws, unique):
    name = unique("badtag")
    err = aws.fail("ecs", "create-cluster", "--cluster-name", name, "--tags", "key=aws:nope,value=1")
    assert err.code == "InvalidParameterException", err.stderr
    assert err.operation == "CreateCluster"


def test_tags_of_unknown_resource(ecs, unique):
    ghost = cluster_arn(unique("ghost"))
    accepted = ("ClusterNotFoundException", "ResourceNotFoundException", "InvalidParameterException")
    assert_client_error(lambda: ecs.list_tags_for_resource(resourceArn=ghost), accepted)
    assert_client_error(lambda: ecs.tag_resource(resourceArn=ghost, tags=[{"key": "a", "value": "b"}]), accepted)
    assert_client_error(lambda: ecs.untag_resource(resourceArn=ghost, tagKeys=["a"]), accepted)
    assert_client_error(
        lambda: ecs.list_tags_for_resource(resourceArn="arn:aws:ecs:us-east-1:000000000000:task-definition/nope:1"),
        ("ClientException", "ResourceNotFoundException", "InvalidParameterException"),
    )


def test_untag_boto3(ecs, cluster):
    ecs.tag_resource(resourceArn=cluster, tags=[{"key": "gone", "value": "soon"}, {"key": "stays", "value": ""}])
    ecs.untag_resource(resourceArn=cluster, tagKeys=["gone"])
    assert tags_dict(ecs.list_tags_for_resource(resourceArn=cluster)["tags"]) == {"created": "yes", "stays": ""}
