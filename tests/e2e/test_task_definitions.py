"""Task definitions: RegisterTaskDefinition, DescribeTaskDefinition,
ListTaskDefinitions, ListTaskDefinitionFamilies, DeregisterTaskDefinition,
DeleteTaskDefinitions."""

import datetime
import json
from pathlib import Path

from berthlib import (
    ROOT_ARN,
    assert_client_error,
    assert_subset,
    tags_dict,
    task_definition_arn,
)

FULL = Path(__file__).parent / "data" / "taskdef-full.json"


def simple(family, image="busybox:1.36", **extra):
    doc = {
        "family": family,
        "containerDefinitions": [{"name": "app", "image": image, "memory": 64, "essential": True}],
    }
    doc.update(extra)
    return doc


def register(ecs, family, **kw):
    return ecs.register_task_definition(**simple(family, **kw))["taskDefinition"]


def without_timestamps(td):
    return {k: v for k, v in td.items() if k not in ("registeredAt", "deregisteredAt")}


def test_register_full_definition_from_file_roundtrips(aws, ecs, unique, tmp_path):
    doc = json.loads(FULL.read_text())
    family = unique("full")
    doc["family"] = family
    path = tmp_path / "taskdef.json"
    path.write_text(json.dumps(doc))
    sent = {k: v for k, v in doc.items() if k != "tags"}

    out = aws("ecs", "register-task-definition", "--cli-input-json", f"file://{path}")
    td = out["taskDefinition"]
    assert_subset(sent, td)
    assert td["revision"] == 1
    assert td["status"] == "ACTIVE"
    assert td["taskDefinitionArn"] == task_definition_arn(family, 1)
    assert td["registeredBy"] == ROOT_ARN
    assert isinstance(td["registeredAt"], (int, float, str)), td.get("registeredAt")
    assert "EC2" in td["compatibilities"] and "FARGATE" not in td["compatibilities"], td["compatibilities"]
    assert tags_dict(out.get("tags")) == {"team": "core", "cost-center": "42"}

    # Described by family, the same document comes back, tags on request.
    described = aws("ecs", "describe-task-definition", "--task-definition", family, "--include", "TAGS")
    assert described["taskDefinition"] == td
    assert tags_dict(described["tags"]) == {"team": "core", "cost-center": "42"}

    # boto3 parses it into the same thing (timestamps as datetimes).
    b = ecs.describe_task_definition(taskDefinition=task_definition_arn(family, 1))
    assert_subset(sent, b["taskDefinition"])
    assert without_timestamps(b["taskDefinition"]) == without_timestamps(td)
    registered_at = b["taskDefinition"]["registeredAt"]
    assert isinstance(registered_at, datetime.datetime)
    age = datetime.datetime.now(datetime.timezone.utc) - registered_at
    assert abs(age.total_seconds()) < 300, registered_at
    assert not b.get("tags"), "tags must come back only with include=TAGS"


def test_requires_attributes_are_derived(ecs, unique):
    doc = json.loads(FULL.read_text())
    doc["family"] = unique("attrs")
    doc.pop("tags")
    td = ecs.register_task_definition(**doc)["taskDefinition"]
    names = {a["name"] for a in td.get("requiresAttributes", [])}
    for expected in (
        "com.amazonaws.ecs.capability.logging-driver.awslogs",
        "com.amazonaws.ecs.capability.task-iam-role",
        "ecs.capability.container-health-check",
    ):
        assert expected in names, f"{expected} missing from requiresAttributes {sorted(names)}"


def test_cpu_and_memory_unit_forms(ecs, unique):
    family = unique("units")
    td = register(ecs, family, cpu="1 vCPU", memory="2 GB")
    assert (td["cpu"], td["memory"]) == ("1024", "2048")
    td = register(ecs, family, cpu="2048", memory="4096")
    assert (td["cpu"], td["memory"]) == ("2048", "4096")


def test_revisions_increment_and_describe_forms(aws, ecs, unique):
    family = unique("rev")
    revs = [register(ecs, family, image=f"busybox:1.3{i}")["revision"] for i in range(3)]
    assert revs == [1, 2, 3]
    other = unique("rev-other")
    assert register(ecs, other)["revision"] == 1, "revisions are per family"

    latest, second, first = aws.parallel(
        ["ecs", "describe-task-definition", "--task-definition", family],
        ["ecs", "describe-task-definition", "--task-definition", f"{family}:2"],
        ["ecs", "describe-task-definition", "--task-definition", task_definition_arn(family, 1)],
    )
    assert latest["taskDefinition"]["revision"] == 3
    assert latest["taskDefinition"]["containerDefinitions"][0]["image"] == "busybox:1.32"
    assert second["taskDefinition"]["revision"] == 2
    assert second["taskDefinition"]["containerDefinitions"][0]["image"] == "busybox:1.31"
    assert first["taskDefinition"]["taskDefinitionArn"] == task_definition_arn(family, 1)
    assert first["taskDefinition"]["containerDefinitions"][0]["image"] == "busybox:1.30"

    assert_client_error(lambda: ecs.describe_task_definition(taskDefinition=f"{family}:9"), "ClientException")
    assert_client_error(lambda: ecs.describe_task_definition(taskDefinition=unique("never")), "ClientException")


def test_task_definition_tags_only_with_include(aws, ecs, unique):
    family = unique("tagged")
    out = ecs.register_task_definition(**simple(family), tags=[{"key": "a", "value": "1"}])
    assert tags_dict(out["tags"]) == {"a": "1"}
    plain = aws("ecs", "describe-task-definition", "--task-definition", f"{family}:1")
    assert not plain.get("tags")
    with_tags = ecs.describe_task_definition(taskDefinition=family, include=["TAGS"])
    assert tags_dict(with_tags["tags"]) == {"a": "1"}


def _list_all(ecs, **kw):
    return [a for page in ecs.get_paginator("list_task_definitions").paginate(**kw) for a in page["taskDefinitionArns"]]


def test_list_task_definitions_filters_sort_pagination(aws, ecs, unique):
    family = unique("list")
    for _ in range(5):
        register(ecs, family)
    # A family whose name extends ours must not leak in: familyPrefix is the
    # full family name in ListTaskDefinitions.
    register(ecs, family + "x")
    arns = [task_definition_arn(family, r) for r in range(1, 6)]

    asc = aws("ecs", "list-task-definitions", "--family-prefix", family)["taskDefinitionArns"]
    assert asc == arns
    desc = aws("ecs", "list-task-definitions", "--family-prefix", family, "--sort", "DESC")["taskDefinitionArns"]
    assert desc == arns[::-1]

    first = aws("ecs", "list-task-definitions", "--family-prefix", family, "--max-items", "2")
    assert first["taskDefinitionArns"] == arns[:2]
    assert first.get("NextToken")
    rest = aws("ecs", "list-task-definitions", "--family-prefix", family, "--starting-token", first["NextToken"])
    assert rest["taskDefinitionArns"] == arns[2:]

    # boto3 by hand: pages of 2, 2, 1.
    pages, token = [], None
    while True:
        resp = ecs.list_task_definitions(familyPrefix=family, maxResults=2, **({"nextToken": token} if token else {}))
        pages.append(resp["taskDefinitionArns"])
        token = resp.get("nextToken")
        if not token:
            break
        assert len(pages) < 10
    assert [len(p) for p in pages if p] == [2, 2, 1]
    assert sum(pages, []) == arns
    assert _list_all(ecs, familyPrefix=family, sort="DESC", PaginationConfig={"PageSize": 2}) == arns[::-1]

    # Status filters.
    ecs.deregister_task_definition(taskDefinition=f"{family}:5")
    ecs.deregister_task_definition(taskDefinition=f"{family}:2")
    active = aws("ecs", "list-task-definitions", "--family-prefix", family, "--status", "ACTIVE")["taskDefinitionArns"]
    assert active == [arns[0], arns[2], arns[3]]
    assert _list_all(ecs, familyPrefix=family) == active, "ACTIVE is the default status"
    inactive = aws("ecs", "list-task-definitions", "--family-prefix", family, "--status", "INACTIVE")["taskDefinitionArns"]
    assert inactive == [arns[1], arns[4]]

    # Without a family every family is listed, ours among them, sorted.
    everything = _list_all(ecs)
    assert set(active) <= set(everything)
    assert task_definition_arn(family + "x", 1) in everything
    assert len(everything) == len(set(everything))


def test_list_task_definition_families_by_status(aws, ecs, unique):
    prefix = unique("fam")
    active, inactive, mixed = f"{prefix}-active", f"{prefix}-inactive", f"{prefix}-mixed"
    register(ecs, active)
    register(ecs, inactive)
    ecs.deregister_task_definition(taskDefinition=f"{inactive}:1")
    register(ecs, mixed)
    register(ecs, mixed)
    ecs.deregister_task_definition(taskDefinition=f"{mixed}:2")

    got_active, got_inactive, got_all = aws.parallel(
        ["ecs", "list-task-definition-families", "--family-prefix", prefix, "--status", "ACTIVE"],
        ["ecs", "list-task-definition-families", "--family-prefix", prefix, "--status", "INACTIVE"],
        ["ecs", "list-task-definition-families", "--family-prefix", prefix, "--status", "ALL"],
    )
    assert got_active["families"] == sorted([active, mixed])
    assert got_inactive["families"] == [inactive]
    assert got_all["families"] == sorted([active, inactive, mixed])

    # boto3, one family a page.
    seen, token = [], None
    while True:
        resp = ecs.list_task_definition_families(
            familyPrefix=prefix, status="ALL", maxResults=1, **({"nextToken": token} if token else {})
        )
        seen += resp["families"]
        token = resp.get("nextToken")
        if not token:
            break
        assert len(seen) < 10
    assert seen == sorted([active, inactive, mixed])


def test_deregister_then_describe_returns_latest_active(aws, ecs, unique):
    family = unique("dereg")
    for _ in range(3):
        register(ecs, family)
    out = aws("ecs", "deregister-task-definition", "--task-definition", f"{family}:3")["taskDefinition"]
    assert out["status"] == "INACTIVE"
    assert out["revision"] == 3
    assert out.get("deregisteredAt") is not None

    latest = ecs.describe_task_definition(taskDefinition=family)["taskDefinition"]
    assert (latest["revision"], latest["status"]) == (2, "ACTIVE")
    inactive = ecs.describe_task_definition(taskDefinition=f"{family}:3")["taskDefinition"]
    assert inactive["status"] == "INACTIVE"
    assert isinstance(inactive["deregisteredAt"], datetime.datetime)

    ecs.deregister_task_definition(taskDefinition=task_definition_arn(family, 2))
    ecs.deregister_task_definition(taskDefinition=f"{family}:1")
    # With no ACTIVE revision left, the family alone describes nothing.
    assert_client_error(lambda: ecs.describe_task_definition(taskDefinition=family), "ClientException")
    # A new registration continues the numbering and is the latest again.
    assert register(ecs, family)["revision"] == 4
    assert ecs.describe_task_definition(taskDefinition=family)["taskDefinition"]["revision"] == 4


def test_delete_task_definitions_only_inactive(aws, ecs, unique):
    family = unique("del")
    register(ecs, family)
    register(ecs, family)
    ecs.deregister_task_definition(taskDefinition=f"{family}:1")

    out = aws("ecs", "delete-task-definitions", "--task-definitions", f"{family}:1", f"{family}:2")
    deleted = out["taskDefinitions"]
    assert [(d["taskDefinitionArn"], d["status"]) for d in deleted] == [
        (task_definition_arn(family, 1), "DELETE_IN_PROGRESS")
    ]
    assert len(out["failures"]) == 1, out["failures"]
    failure = out["failures"][0]
    assert failure["arn"] in (task_definition_arn(family, 2), f"{family}:2"), failure
    assert failure.get("reason"), failure

    # Revision 2 is untouched; the deleted number is never reused.
    assert ecs.describe_task_definition(taskDefinition=f"{family}:2")["taskDefinition"]["status"] == "ACTIVE"
    assert register(ecs, family)["revision"] == 3
    assert task_definition_arn(family, 1) not in _list_all(ecs, familyPrefix=family, status="INACTIVE")

    # boto3: deleting an unknown revision is a failure entry, not an error.
    b = ecs.delete_task_definitions(taskDefinitions=[f"{family}:99"])
    assert b["taskDefinitions"] == []
    assert len(b["failures"]) == 1
