"""Clusters: CreateCluster, DescribeClusters, ListClusters, UpdateCluster,
UpdateClusterSettings, DeleteCluster, through the aws CLI and boto3."""

import json

from berthlib import (
    ACCOUNT_ID,
    assert_client_error,
    assert_subset,
    cluster_arn,
    settings_dict,
    tags_dict,
)

EXEC_CONFIG = {
    "executeCommandConfiguration": {
        "kmsKeyId": "arn:aws:kms:us-east-1:000000000000:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        "logging": "OVERRIDE",
        "logConfiguration": {
            "cloudWatchLogGroupName": "/ecs/exec",
            "cloudWatchEncryptionEnabled": True,
            "s3BucketName": "exec-logs",
            "s3EncryptionEnabled": False,
            "s3KeyPrefix": "exec/",
        },
    }
}


def register_instance(ecs, cluster, cpu=1024, memory=2048, attributes=None):
    resp = ecs.register_container_instance(
        cluster=cluster,
        totalResources=[
            {"name": "CPU", "type": "INTEGER", "integerValue": cpu},
            {"name": "MEMORY", "type": "INTEGER", "integerValue": memory},
        ],
        attributes=attributes or [],
    )
    return resp["containerInstance"]


def test_create_cluster_cli_with_tags_settings_configuration(aws, unique):
    name = unique("cl")
    out = aws(
        "ecs", "create-cluster", "--cluster-name", name,
        "--tags", "key=env,value=test", "key=team,value=core",
        "--settings", "name=containerInsights,value=enabled",
        "--configuration", json.dumps(EXEC_CONFIG),
    )
    c = out["cluster"]
    assert c["clusterName"] == name
    assert c["clusterArn"] == cluster_arn(name)
    assert c["status"] == "ACTIVE"
    for counter in ("registeredContainerInstancesCount", "runningTasksCount", "pendingTasksCount", "activeServicesCount"):
        assert c[counter] == 0, counter
    assert tags_dict(c.get("tags")) == {"env": "test", "team": "core"}
    assert settings_dict(c.get("settings")) == {"containerInsights": "enabled"}
    assert_subset(EXEC_CONFIG, c["configuration"])

    # Everything comes back from DescribeClusters with every include.
    d = aws(
        "ecs", "describe-clusters", "--clusters", name, "does-not-exist-" + name,
        "--include", "TAGS", "SETTINGS", "STATISTICS", "CONFIGURATIONS", "ATTACHMENTS",
    )
    assert len(d["clusters"]) == 1
    got = d["clusters"][0]
    assert got["clusterArn"] == cluster_arn(name)
    assert got["status"] == "ACTIVE"
    assert tags_dict(got["tags"]) == {"env": "test", "team": "core"}
    assert settings_dict(got["settings"]) == {"containerInsights": "enabled"}
    assert_subset(EXEC_CONFIG, got["configuration"])
    assert isinstance(got.get("statistics", []), list)
    assert d["failures"] == [{"arn": cluster_arn("does-not-exist-" + name), "reason": "MISSING"}]


def test_describe_clusters_boto3_include_and_missing(ecs, unique):
    name = unique("cl")
    ecs.create_cluster(clusterName=name, tags=[{"key": "k", "value": "v"}])
    plain = ecs.describe_clusters(clusters=[name])
    assert [c["clusterName"] for c in plain["clusters"]] == [name]
    # Tags come back only when asked for.
    assert not plain["clusters"][0].get("tags"), plain["clusters"][0]
    assert plain["failures"] == []

    by_arn = ecs.describe_clusters(clusters=[cluster_arn(name)], include=["TAGS"])
    assert by_arn["clusters"][0]["clusterName"] == name
    assert tags_dict(by_arn["clusters"][0]["tags"]) == {"k": "v"}

    missing = ecs.describe_clusters(clusters=["nope-" + name, "nope2-" + name])
    assert missing["clusters"] == []
    assert sorted(missing["failures"], key=lambda f: f["arn"]) == [
        {"arn": cluster_arn("nope-" + name), "reason": "MISSING"},
        {"arn": cluster_arn("nope2-" + name), "reason": "MISSING"},
    ]


def test_default_cluster(ecs, aws):
    created = ecs.create_cluster()["cluster"]
    assert created["clusterName"] == "default"
    assert created["clusterArn"] == cluster_arn("default")
    # Describing with no clusters means the default cluster.
    d = aws("ecs", "describe-clusters")
    assert [c["clusterArn"] for c in d["clusters"]] == [cluster_arn("default")]


def test_create_cluster_is_idempotent(ecs, unique):
    name = unique("cl")
    a = ecs.create_cluster(clusterName=name)["cluster"]
    b = ecs.create_cluster(clusterName=name)["cluster"]
    assert a["clusterArn"] == b["clusterArn"]
    assert b["status"] == "ACTIVE"


def _all_cluster_arns_boto3(ecs, page_size):
    arns, token, pages = [], None, 0
    while True:
        kw = {"maxResults": page_size}
        if token:
            kw["nextToken"] = token
        resp = ecs.list_clusters(**kw)
        assert len(resp["clusterArns"]) <= page_size
        arns += resp["clusterArns"]
        pages += 1
        token = resp.get("nextToken")
        if not token:
            return arns, pages
        assert pages < 1000, "pagination does not end"


def test_list_clusters_pagination(aws, ecs, unique):
    prefix = unique("page")
    names = [f"{prefix}-{i}" for i in range(5)]
    for n in names:
        ecs.create_cluster(clusterName=n)
    mine = {cluster_arn(n) for n in names}

    # The whole list, in one call and through the CLI's own paging.
    everything = aws("ecs", "list-clusters")["clusterArns"]
    assert mine <= set(everything)
    assert len(everything) == len(set(everything)), "duplicates in list-clusters"
    paged = aws("ecs", "list-clusters", "--page-size", "2")["clusterArns"]
    assert sorted(paged) == sorted(everything)

    # --max-items truncates and hands out a NextToken to resume from.
    first = aws("ecs", "list-clusters", "--max-items", "2")
    assert len(first["clusterArns"]) == 2
    assert first.get("NextToken"), first
    rest = aws("ecs", "list-clusters", "--starting-token", first["NextToken"])
    assert sorted(first["clusterArns"] + rest["clusterArns"]) == sorted(everything)

    # boto3: maxResults / nextToken by hand, then the paginator.
    by_hand, pages = _all_cluster_arns_boto3(ecs, 2)
    assert sorted(by_hand) == sorted(everything)
    assert pages >= (len(everything) + 1) // 2
    paginator = ecs.get_paginator("list_clusters")
    via_paginator = [a for page in paginator.paginate(PaginationConfig={"PageSize": 3}) for a in page["clusterArns"]]
    assert sorted(via_paginator) == sorted(everything)


def test_update_cluster_and_settings(aws, ecs, unique):
    name = unique("cl")
    ecs.create_cluster(clusterName=name, settings=[{"name": "containerInsights", "value": "enabled"}])

    new_config = {
        "executeCommandConfiguration": {
            "logging": "OVERRIDE",
            "logConfiguration": {"cloudWatchLogGroupName": "/ecs/updated", "cloudWatchEncryptionEnabled": False},
        }
    }
    out = aws(
        "ecs", "update-cluster", "--cluster", name,
        "--settings", "name=containerInsights,value=disabled",
        "--configuration", json.dumps(new_config),
    )["cluster"]
    assert out["clusterArn"] == cluster_arn(name)
    assert settings_dict(out["settings"]) == {"containerInsights": "disabled"}
    assert_subset(new_config, out["configuration"])

    out = aws(
        "ecs", "update-cluster-settings", "--cluster", cluster_arn(name),
        "--settings", "name=containerInsights,value=enhanced",
    )["cluster"]
    assert settings_dict(out["settings"]) == {"containerInsights": "enhanced"}

    d = ecs.describe_clusters(clusters=[name], include=["SETTINGS", "CONFIGURATIONS"])["clusters"][0]
    assert settings_dict(d["settings"]) == {"containerInsights": "enhanced"}
    assert_subset(new_config, d["configuration"])

    b = ecs.update_cluster_settings(cluster=name, settings=[{"name": "containerInsights", "value": "disabled"}])
    assert settings_dict(b["cluster"]["settings"]) == {"containerInsights": "disabled"}


def test_update_unknown_cluster(ecs, aws, unique):
    name = unique("ghost")
    assert_client_error(
        lambda: ecs.update_cluster_settings(cluster=name, settings=[{"name": "containerInsights", "value": "enabled"}]),
        "ClusterNotFoundException",
    )
    err = aws.fail("ecs", "update-cluster", "--cluster", name, "--settings", "name=containerInsights,value=enabled")
    assert err.code == "ClusterNotFoundException", err.stderr


def test_delete_cluster_then_inactive(aws, ecs, unique):
    name = unique("cl")
    aws("ecs", "create-cluster", "--cluster-name", name)
    out = aws("ecs", "delete-cluster", "--cluster", name)
    assert out["cluster"]["clusterArn"] == cluster_arn(name)
    assert out["cluster"]["status"] == "INACTIVE"

    d = ecs.describe_clusters(clusters=[name])
    assert [(c["clusterName"], c["status"]) for c in d["clusters"]] == [(name, "INACTIVE")]
    assert cluster_arn(name) not in [a for p in ecs.get_paginator("list_clusters").paginate() for a in p["clusterArns"]]

    # A deleted name can be used again.
    again = ecs.create_cluster(clusterName=name)["cluster"]
    assert again["status"] == "ACTIVE"
    assert ecs.describe_clusters(clusters=[name])["clusters"][0]["status"] == "ACTIVE"


def test_delete_unknown_cluster_cli_error(aws, unique):
    err = aws.fail("ecs", "delete-cluster", "--cluster", unique("ghost"))
    assert err.returncode in (254, 255), err
    assert err.code == "ClusterNotFoundException", err.stderr
    assert err.operation == "DeleteCluster"
    assert "Cluster not found" in err.message


def test_delete_cluster_refused_while_instance_registered(aws, ecs, unique):
    name = unique("cl")
    ecs.create_cluster(clusterName=name)
    inst = register_instance(ecs, name)
    arn = inst["containerInstanceArn"]
    assert arn.startswith(f"arn:aws:ecs:us-east-1:{ACCOUNT_ID}:container-instance/{name}/"), arn
    assert inst["status"] == "ACTIVE"
    d = ecs.describe_clusters(clusters=[name])["clusters"][0]
    assert d["registeredContainerInstancesCount"] == 1

    assert aws("ecs", "list-container-instances", "--cluster", name)["containerInstanceArns"] == [arn]
    err = aws.fail("ecs", "delete-cluster", "--cluster", name)
    assert err.code == "ClusterContainsContainerInstancesException", err.stderr
    assert_client_error(lambda: ecs.delete_cluster(cluster=name), "ClusterContainsContainerInstancesException")
    assert ecs.describe_clusters(clusters=[name])["clusters"][0]["status"] == "ACTIVE"

    dereg = ecs.deregister_container_instance(cluster=name, containerInstance=arn)
    assert dereg["containerInstance"]["containerInstanceArn"] == arn
    assert dereg["containerInstance"]["status"] == "INACTIVE"
    assert ecs.describe_clusters(clusters=[name])["clusters"][0]["registeredContainerInstancesCount"] == 0

    out = ecs.delete_cluster(cluster=name)
    assert out["cluster"]["status"] == "INACTIVE"


def test_cluster_not_found_errors(ecs, unique):
    err = assert_client_error(lambda: ecs.delete_cluster(cluster=unique("ghost")), "ClusterNotFoundException")
    assert "Cluster not found" in err["Error"]["Message"]
    assert_client_error(
        lambda: ecs.list_container_instances(cluster=unique("ghost")), "ClusterNotFoundException"
    )
