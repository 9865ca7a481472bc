"""ECS's limits and honest refusals with the real clients (issue 13):

- desiredCount is held to the tasks per service quota (5,000), and a service
  at the quota whose tasks fit nowhere leaves the server's memory modest;
- task definitions are limited to 64 KiB;
- every setting Berth cannot honour is refused in one message, by RunTask
  and CreateService alike;
- enableExecuteCommand true is refused by RunTask, StartTask, CreateService
  and UpdateService alike (Berth has no ECS Exec), false is accepted;
- awsvpc is refused by name, and bridge/host with a networkConfiguration get
  ECS's message."""

import json
import time
from pathlib import Path

from berthlib import assert_client_error, wait_for

# What the server may hold after a service of 5,000 unplaceable tasks: far
# above what it needs (tens of MiB), far below the gigabytes one entry per
# task cost.
RSS_BOUND_KIB = 1 << 20


def _instance(ecs, cluster, memory):
    return ecs.register_container_instance(
        cluster=cluster,
        totalResources=[
            {"name": "CPU", "type": "INTEGER", "integerValue": 2048},
            {"name": "MEMORY", "type": "INTEGER", "integerValue": memory},
            {"name": "PORTS", "type": "STRINGSET", "stringSetValue": ["22"]},
        ],
        attributes=[{"name": "ecs.availability-zone", "value": "us-east-1a"}],
    )["containerInstance"]["containerInstanceArn"]


def _register(aws, family, **container):
    c = {"name": "app", "image": "busybox", "memory": 64, **container}
    aws("ecs", "register-task-definition", "--family", family, "--container-definitions", json.dumps([c]))


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def test_desired_count_is_capped_and_an_unplaceable_service_stays_small(berth, aws, ecs, unique):
    cluster = unique("quota")
    aws("ecs", "create-cluster", "--cluster-name", cluster)
    family = unique("web")
    _register(aws, family, memory=512)
    # A huge count is refused, before anything is stored.
    err = aws.fail("ecs", "create-service", "--cluster", cluster, "--service-name", "huge",
                   "--task-definition", family, "--desired-count", "2000000000")
    assert err.code == "InvalidParameterException"
    assert err.message.startswith("Desired count exceeds limit."), err.message
    assert "5000" in err.message
    assert aws("ecs", "list-services", "--cluster", cluster)["serviceArns"] == []
    assert_client_error(lambda: ecs.create_service(cluster=cluster, serviceName="over", taskDefinition=family,
                                                   desiredCount=5001), "InvalidParameterException")
    # RunTask's count is 1 to 10.
    for count in ("0", "11"):
        assert aws.fail("ecs", "run-task", "--cluster", cluster, "--task-definition", family,
                        "--count", count).code == "InvalidParameterException"

    # The quota itself, on instances too small for the task: nothing is placed, one event says why,
    # and the server's memory stays modest while the controller keeps trying.
    _instance(ecs, cluster, 128)
    _instance(ecs, cluster, 128)
    aws("ecs", "create-service", "--cluster", cluster, "--service-name", "web",
        "--task-definition", family, "--desired-count", "5000")
    err = aws.fail("ecs", "update-service", "--cluster", cluster, "--service", "web", "--desired-count", "5001")
    assert err.code == "InvalidParameterException"

    def unable():
        svc = ecs.describe_services(cluster=cluster, services=["web"])["services"][0]
        return [e["message"] for e in svc["events"] if "was unable to place a task" in e["message"]]

    messages = wait_for(unable, timeout=30, what="a service event saying the tasks cannot be placed")
    assert "insufficient memory" in messages[0]
    # A few more passes of the controller (one a second) over the 5,000 tasks.
    time.sleep(3)
    rss = _rss_kib(berth.proc.pid)
    assert rss < RSS_BOUND_KIB, f"server RSS {rss} KiB after a service of 5,000 unplaceable tasks"
    svc = ecs.describe_services(cluster=cluster, services=["web"])["services"][0]
    assert svc["runningCount"] == 0 and svc["pendingCount"] == 0
    assert aws("ecs", "list-tasks", "--cluster", cluster)["taskArns"] == []
    # RunTask reports its failures per instance, not per task.
    out = aws("ecs", "run-task", "--cluster", cluster, "--task-definition", family, "--count", "10")
    assert out["tasks"] == []
    assert [f["reason"] for f in out["failures"]] == ["RESOURCE:MEMORY", "RESOURCE:MEMORY"]
    # Leave the shared server as found.
    aws("ecs", "delete-service", "--cluster", cluster, "--service", "web", "--force")


def _with_environment(family, size):
    value = "x" * 1000
    env = [{"name": f"V{i:04d}", "value": value} for i in range(size // 1016)]
    return {"family": family,
            "containerDefinitions": [{"name": "app", "image": "busybox", "memory": 64, "environment": env}]}


def test_task_definitions_are_limited_to_64_kib(aws, ecs, unique, tmp_path):
    big = tmp_path / "big.json"
    big.write_text(json.dumps(_with_environment(unique("big"), 100_000)))
    err = aws.fail("ecs", "register-task-definition", "--cli-input-json", f"file://{big}")
    assert err.code == "ClientException"
    assert err.message.startswith("Actual length: '"), err.message
    assert err.message.endswith("'. Max allowed length is '65536' bytes."), err.message
    actual = int(err.message.split("'")[1])
    assert 65536 < actual < 110_000
    # boto3 too; and just under the limit is accepted.
    assert_client_error(lambda: ecs.register_task_definition(**_with_environment(unique("big"), 70_000)),
                        "ClientException")
    td = ecs.register_task_definition(**_with_environment(unique("fits"), 60_000))["taskDefinition"]
    assert len(td["containerDefinitions"][0]["environment"]) == 60_000 // 1016


def test_every_unsupported_setting_is_refused_in_one_message(aws, ecs, unique):
    cluster = unique("unsupported")
    aws("ecs", "create-cluster", "--cluster-name", cluster)
    arn = _instance(ecs, cluster, 4096)
    family = unique("many")
    # ECS registers it, and so does Berth.
    aws("ecs", "register-task-definition", "--family", family, "--pid-mode", "host", "--container-definitions",
        json.dumps([{"name": "app", "image": "busybox", "memory": 64,
                     "logConfiguration": {"logDriver": "awslogs", "options": {"awslogs-group": "g"}},
                     "secrets": [{"name": "S", "valueFrom": "arn:aws:ssm:us-east-1:000000000000:parameter/s"}]},
                    {"name": "side", "image": "busybox", "memory": 64, "startTimeout": 30}]))
    expected = ["'pidMode'", "'logConfiguration' of container 'app'", "'secrets' of container 'app'",
                "'startTimeout' of container 'side'"]
    failures = [
        aws.fail("ecs", "run-task", "--cluster", cluster, "--task-definition", family),
        aws.fail("ecs", "start-task", "--cluster", cluster, "--task-definition", family,
                 "--container-instances", arn),
        aws.fail("ecs", "create-service", "--cluster", cluster, "--service-name", "many",
                 "--task-definition", family, "--desired-count", "1"),
    ]
    for err in failures:
        assert err.code == "UnsupportedFeatureException", err.stderr
        for what in expected:
            assert what in err.message, f"{what} missing from {err.message}"
    plain = unique("plain")
    _register(aws, plain)
    aws("ecs", "create-service", "--cluster", cluster, "--service-name", "svc",
        "--task-definition", plain, "--desired-count", "0")
    err = aws.fail("ecs", "update-service", "--cluster", cluster, "--service", "svc", "--task-definition", family)
    assert err.code == "UnsupportedFeatureException"
    assert all(what in err.message for what in expected), err.message
    assert aws("ecs", "list-tasks", "--cluster", cluster)["taskArns"] == []
    assert aws("ecs", "list-services", "--cluster", cluster)["serviceArns"][0].endswith("/svc")
    aws("ecs", "delete-service", "--cluster", cluster, "--service", "svc")


def test_execute_command_is_refused_alike(aws, ecs, unique):
    cluster = unique("exec")
    aws("ecs", "create-cluster", "--cluster-name", cluster)
    arn = _instance(ecs, cluster, 4096)
    family = unique("web")
    _register(aws, family)
    failures = [
        aws.fail("ecs", "run-task", "--cluster", cluster, "--task-definition", family, "--enable-execute-command"),
        aws.fail("ecs", "start-task", "--cluster", cluster, "--task-definition", family,
                 "--container-instances", arn, "--enable-execute-command"),
        aws.fail("ecs", "create-service", "--cluster", cluster, "--service-name", "web",
                 "--task-definition", family, "--desired-count", "0", "--enable-execute-command"),
    ]
    for err in failures:
        assert err.code == "InvalidParameterException", err.stderr
        assert "enableExecuteCommand" in err.message
    assert aws("ecs", "list-tasks", "--cluster", cluster)["taskArns"] == []
    assert aws("ecs", "list-services", "--cluster", cluster)["serviceArns"] == []
    # false is accepted everywhere, and shown as it is.
    task = aws("ecs", "run-task", "--cluster", cluster, "--task-definition", family,
               "--disable-execute-command")["tasks"][0]
    assert task["enableExecuteCommand"] is False
    svc = aws("ecs", "create-service", "--cluster", cluster, "--service-name", "web",
              "--task-definition", family, "--desired-count", "0", "--disable-execute-command")["service"]
    assert svc["enableExecuteCommand"] is False
    err = aws.fail("ecs", "update-service", "--cluster", cluster, "--service", "web", "--enable-execute-command")
    assert err.code == "InvalidParameterException" and "enableExecuteCommand" in err.message
    assert_client_error(lambda: ecs.update_service(cluster=cluster, service="web", enableExecuteCommand=True),
                        "InvalidParameterException")
    svc = ecs.update_service(cluster=cluster, service="web", enableExecuteCommand=False)["service"]
    assert svc["enableExecuteCommand"] is False
    aws("ecs", "delete-service", "--cluster", cluster, "--service", "web")
    ecs.stop_task(cluster=cluster, task=task["taskArn"])


def test_awsvpc_is_named_and_other_modes_refuse_a_network_configuration(aws, ecs, unique):
    cluster = unique("netmode")
    aws("ecs", "create-cluster", "--cluster-name", cluster)
    _instance(ecs, cluster, 4096)
    vpc, bridge, host = unique("vpc"), unique("bridge"), unique("host")
    container = json.dumps([{"name": "app", "image": "busybox", "memory": 64}])
    aws("ecs", "register-task-definition", "--family", vpc, "--network-mode", "awsvpc",
        "--container-definitions", container)
    aws("ecs", "register-task-definition", "--family", bridge, "--container-definitions", container)
    aws("ecs", "register-task-definition", "--family", host, "--network-mode", "host",
        "--container-definitions", container)
    net = "awsvpcConfiguration={subnets=[subnet-12345678]}"
    # awsvpc with the networkConfiguration it needs: refused as unsupported, by name.
    for err in [
        aws.fail("ecs", "run-task", "--cluster", cluster, "--task-definition", vpc, "--network-configuration", net),
        aws.fail("ecs", "run-task", "--cluster", cluster, "--task-definition", vpc),
        aws.fail("ecs", "create-service", "--cluster", cluster, "--service-name", "vpc", "--task-definition", vpc,
                 "--desired-count", "1", "--network-configuration", net),
    ]:
        assert err.code == "UnsupportedFeatureException", err.stderr
        assert "networkMode 'awsvpc'" in err.message
        assert "Network Configuration" not in err.message
    # bridge and host take none: ECS's message.
    for family in (bridge, host):
        for err in [
            aws.fail("ecs", "run-task", "--cluster", cluster, "--task-definition", family,
                     "--network-configuration", net),
            aws.fail("ecs", "create-service", "--cluster", cluster, "--service-name", "s",
                     "--task-definition", family, "--desired-count", "0", "--network-configuration", net),
        ]:
            assert err.code == "InvalidParameterException", err.stderr
            assert err.message == "Network Configuration is not valid for the given networkMode of this task definition."
    assert aws("ecs", "list-tasks", "--cluster", cluster)["taskArns"] == []
    assert aws("ecs", "list-services", "--cluster", cluster)["serviceArns"] == []
