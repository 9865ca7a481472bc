"""Tasks through the API with the real clients: RunTask places on
registered container instances (registered through boto3 as an agent
would), failures come back in ECS's form, and the agent-facing state-change
operations move the lifecycle. The agent that runs containers on Docker is
tested separately once it exists; here boto3 plays the agent's part."""

from berthlib import assert_client_error


def _instance(ecs, cluster, zone, memory=1024):
    return ecs.register_container_instance(
        cluster=cluster,
        totalResources=[
            {"name": "CPU", "type": "INTEGER", "integerValue": 2048},
            {"name": "MEMORY", "type": "INTEGER", "integerValue": memory},
            {"name": "PORTS", "type": "STRINGSET", "stringSetValue": ["22", "2375", "2376", "51678", "51679"]},
        ],
        attributes=[{"name": "ecs.availability-zone", "value": zone}],
    )["containerInstance"]["containerInstanceArn"]


def test_run_describe_list_stop_with_the_cli(aws, ecs, unique):
    cluster = unique("tasks")
    aws("ecs", "create-cluster", "--cluster-name", cluster)
    a = _instance(ecs, cluster, "us-east-1a")
    b = _instance(ecs, cluster, "us-east-1b")
    family = unique("web")
    aws("ecs", "register-task-definition", "--family", family, "--container-definitions",
        '[{"name":"app","image":"busybox","memory":256,"portMappings":[{"containerPort":80,"hostPort":0}]}]')

    run = aws("ecs", "run-task", "--cluster", cluster, "--task-definition", family, "--count", "2",
              "--placement-strategy", "type=spread,field=attribute:ecs.availability-zone",
              "--started-by", "e2e", "--overrides", '{"containerOverrides":[{"name":"app","command":["echo","hi"]}]}')
    assert run["failures"] == []
    assert sorted(t["containerInstanceArn"] for t in run["tasks"]) == sorted([a, b])
    task = run["tasks"][0]
    assert task["lastStatus"] == "PROVISIONING" and task["desiredStatus"] == "RUNNING"
    assert task["overrides"]["containerOverrides"][0]["command"] == ["echo", "hi"]
    host_port = task["containers"][0]["networkBindings"][0]["hostPort"]
    assert 49153 <= host_port <= 65535

    listed = aws("ecs", "list-tasks", "--cluster", cluster, "--started-by", "e2e")
    assert sorted(listed["taskArns"]) == sorted(t["taskArn"] for t in run["tasks"])
    described = aws("ecs", "describe-tasks", "--cluster", cluster, "--tasks", task["taskArn"])
    assert described["tasks"][0]["taskDefinitionArn"].endswith(f"task-definition/{family}:1")

    # boto3 plays the agent: the task reaches RUNNING, then stops.
    ecs.submit_task_state_change(cluster=cluster, task=task["taskArn"], status="RUNNING",
                                 containers=[{"containerName": "app", "status": "RUNNING", "runtimeId": "c0ffee"}])
    stopped = aws("ecs", "stop-task", "--cluster", cluster, "--task", task["taskArn"], "--reason", "e2e done")
    assert stopped["task"]["desiredStatus"] == "STOPPED"
    assert stopped["task"]["stopCode"] == "UserInitiated"
    ecs.submit_container_state_change(cluster=cluster, task=task["taskArn"], containerName="app",
                                      status="STOPPED", exitCode=0)
    ecs.submit_task_state_change(cluster=cluster, task=task["taskArn"], status="STOPPED")
    final = ecs.describe_tasks(cluster=cluster, tasks=[task["taskArn"]])["tasks"][0]
    assert final["lastStatus"] == "STOPPED"
    assert final["containers"][0]["exitCode"] == 0
    assert final["stoppedReason"] == "e2e done"
    assert task["taskArn"] in ecs.list_tasks(cluster=cluster, desiredStatus="STOPPED")["taskArns"]


def test_run_task_failures_and_errors(aws, ecs, unique):
    cluster = unique("fail")
    ecs.create_cluster(clusterName=cluster)
    family = unique("big")
    ecs.register_task_definition(family=family, containerDefinitions=[{"name": "a", "image": "b", "memory": 2048}])
    # No instances yet.
    err = aws.fail("ecs", "run-task", "--cluster", cluster, "--task-definition", family)
    assert err.code == "InvalidParameterException"
    arn = _instance(ecs, cluster, "us-east-1a", memory=1024)
    out = ecs.run_task(cluster=cluster, taskDefinition=family)
    assert out["tasks"] == []
    assert out["failures"] == [{"arn": arn, "reason": "RESOURCE:MEMORY"}]
    assert_client_error(lambda: ecs.run_task(cluster=cluster, taskDefinition=family, count=11),
                        "InvalidParameterException")
    assert_client_error(lambda: ecs.run_task(cluster=unique("none"), taskDefinition=family),
                        "ClusterNotFoundException")
    assert_client_error(lambda: ecs.run_task(cluster=cluster, taskDefinition=family, launchType="FARGATE"),
                        "UnsupportedFeatureException")
    # A waiter the CLI ships with polls DescribeTasks: a STOPPED task satisfies tasks-stopped.
    small = unique("small")
    ecs.register_task_definition(family=small, containerDefinitions=[{"name": "a", "image": "b", "memory": 64}])
    t = ecs.run_task(cluster=cluster, taskDefinition=small)["tasks"][0]["taskArn"]
    ecs.stop_task(cluster=cluster, task=t)
    aws("ecs", "wait", "tasks-stopped", "--cluster", cluster, "--tasks", t)


def test_settings_berth_cannot_honour_are_refused_at_run_task(aws, ecs, unique):
    cluster = unique("unhonoured")
    aws("ecs", "create-cluster", "--cluster-name", cluster)
    _instance(ecs, cluster, "us-east-1a")
    family = unique("logs")
    aws("ecs", "register-task-definition", "--family", family, "--container-definitions",
        '[{"name":"app","image":"busybox","memory":64,'
        '"logConfiguration":{"logDriver":"awslogs","options":{"awslogs-group":"g"}}}]')
    err = aws.fail("ecs", "run-task", "--cluster", cluster, "--task-definition", family)
    assert err.code == "UnsupportedFeatureException"
    assert "'logConfiguration' of container 'app'" in err.message
    # Nothing was placed.
    assert aws("ecs", "list-tasks", "--cluster", cluster)["taskArns"] == []
