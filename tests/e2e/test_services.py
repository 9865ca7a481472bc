"""Services through the API with the real aws CLI: create, describe, list,
update (new deployments), delete, and ECS's errors."""

import json


def _setup(aws, unique):
    cluster = unique("svc")
    aws("ecs", "create-cluster", "--cluster-name", cluster)
    family = unique("web")
    aws("ecs", "register-task-definition", "--family", family, "--container-definitions",
        json.dumps([{"name": "app", "image": "busybox", "memory": 32,
                     "portMappings": [{"containerPort": 80, "hostPort": 0}]}]))
    return cluster, family


def test_create_describe_list_update_delete(aws, unique):
    cluster, family = _setup(aws, unique)
    svc = aws("ecs", "create-service", "--cluster", cluster, "--service-name", "web",
              "--task-definition", family, "--desired-count", "0",
              "--deployment-configuration",
              "maximumPercent=150,minimumHealthyPercent=50,deploymentCircuitBreaker={enable=true,rollback=true}",
              "--tags", "key=team,value=a")["service"]
    assert svc["status"] == "ACTIVE" and svc["desiredCount"] == 0
    assert svc["serviceArn"].endswith(f":service/{cluster}/web")
    assert svc["launchType"] == "EC2" and svc["schedulingStrategy"] == "REPLICA"
    assert svc["deploymentConfiguration"]["maximumPercent"] == 150
    assert svc["deploymentConfiguration"]["deploymentCircuitBreaker"] == {"enable": True, "rollback": True}
    [dep] = svc["deployments"]
    assert dep["status"] == "PRIMARY" and dep["rolloutState"] == "IN_PROGRESS"
    assert dep["id"].startswith("ecs-svc/") and dep["taskDefinition"].endswith(f"{family}:1")

    err = aws.fail("ecs", "create-service", "--cluster", cluster, "--service-name", "web",
                   "--task-definition", family, "--desired-count", "1")
    assert err.code == "InvalidParameterException" and "not idempotent" in err.message

    out = aws("ecs", "describe-services", "--cluster", cluster, "--services", "web", "nope", "--include", "TAGS")
    assert out["services"][0]["tags"] == [{"key": "team", "value": "a"}]
    assert out["failures"][0]["reason"] == "MISSING"
    assert "tags" not in aws("ecs", "describe-services", "--cluster", cluster, "--services", "web")["services"][0]
    assert aws("ecs", "list-services", "--cluster", cluster)["serviceArns"] == [svc["serviceArn"]]
    assert aws("ecs", "list-services", "--cluster", cluster, "--scheduling-strategy", "DAEMON")["serviceArns"] == []

    # A new task definition starts a new PRIMARY deployment; the old one becomes ACTIVE.
    aws("ecs", "register-task-definition", "--family", family, "--container-definitions",
        json.dumps([{"name": "app", "image": "busybox", "memory": 64}]))
    up = aws("ecs", "update-service", "--cluster", cluster, "--service", "web",
             "--task-definition", family, "--desired-count", "0")["service"]
    assert [d["status"] for d in up["deployments"]] == ["PRIMARY", "ACTIVE"]
    assert up["taskDefinition"].endswith(f"{family}:2")
    forced = aws("ecs", "update-service", "--cluster", cluster, "--service", "web",
                 "--force-new-deployment")["service"]
    assert len(forced["deployments"]) >= 2 and forced["deployments"][0]["id"] != up["deployments"][0]["id"]

    gone = aws("ecs", "delete-service", "--cluster", cluster, "--service", "web")["service"]
    assert gone["status"] == "DRAINING"
    err = aws.fail("ecs", "update-service", "--cluster", cluster, "--service", "web", "--desired-count", "1")
    assert err.code == "ServiceNotActiveException"


def test_service_errors(aws, unique):
    cluster, family = _setup(aws, unique)
    err = aws.fail("ecs", "create-service", "--cluster", cluster, "--service-name", "bad name!",
                   "--task-definition", family, "--desired-count", "1")
    assert err.code == "InvalidParameterException"
    err = aws.fail("ecs", "create-service", "--cluster", cluster, "--service-name", "s",
                   "--task-definition", "no-such-family", "--desired-count", "1")
    assert err.code == "ClientException"
    err = aws.fail("ecs", "create-service", "--cluster", cluster, "--service-name", "s",
                   "--task-definition", family, "--desired-count", "1",
                   "--deployment-configuration", "minimumHealthyPercent=150")
    assert err.code == "InvalidParameterException"
    err = aws.fail("ecs", "create-service", "--cluster", cluster, "--service-name", "s",
                   "--task-definition", family, "--desired-count", "1",
                   "--load-balancers", "targetGroupArn=arn:aws:elasticloadbalancing:us-east-1:000000000000:targetgroup/t/1,containerName=app,containerPort=8080")
    assert err.code == "InvalidParameterException" and "container port 8080" in err.message
    err = aws.fail("ecs", "update-service", "--cluster", cluster, "--service", "none", "--desired-count", "1")
    assert err.code == "ServiceNotFoundException"
    aws("ecs", "create-service", "--cluster", cluster, "--service-name", "s",
        "--task-definition", family, "--desired-count", "2")
    err = aws.fail("ecs", "delete-service", "--cluster", cluster, "--service", "s")
    assert err.code == "InvalidParameterException" and "scaled above 0" in err.message
    assert aws("ecs", "delete-service", "--cluster", cluster, "--service", "s", "--force")["service"]["status"] == "DRAINING"


def test_service_tags(aws, unique):
    cluster, family = _setup(aws, unique)
    arn = aws("ecs", "create-service", "--cluster", cluster, "--service-name", "tagged",
              "--task-definition", family, "--desired-count", "0")["service"]["serviceArn"]
    aws("ecs", "tag-resource", "--resource-arn", arn, "--tags", "key=env,value=prod")
    assert aws("ecs", "list-tags-for-resource", "--resource-arn", arn)["tags"] == [{"key": "env", "value": "prod"}]
    aws("ecs", "untag-resource", "--resource-arn", arn, "--tag-keys", "env")
    assert aws("ecs", "list-tags-for-resource", "--resource-arn", arn)["tags"] == []
