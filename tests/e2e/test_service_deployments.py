"""Service deployments and service revisions with the real aws CLI and
boto3, on simulated container instances: a service's deployments from
PENDING to SUCCESSFUL, newest first, an unfinished one STOPPED by the next,
a broken revision rolled back by the circuit breaker (ROLLBACK_SUCCESSFUL),
filters, pages, MISSING failures and ECS's errors; finished deployments
reaped after their retention."""

import contextlib
import datetime
import json
import math
import subprocess

import pytest

from berthlib import (ACCOUNT_ID, REGION, ROOT_ACCESS_KEY_ID, ROOT_SECRET_ACCESS_KEY, BerthServer,
                      assert_client_error, berth_binary, hermetic_env, wait_for)

CLUSTER = "sd"
SIM_BEHAVIOR = "com.berth.simulated.behavior"
TERMINAL = {"SUCCESSFUL", "STOPPED", "ROLLBACK_SUCCESSFUL", "ROLLBACK_FAILED"}


@contextlib.contextmanager
def running_fleet(tmp, extra_args=()):
    """A server and one simulated agent of three instances in CLUSTER."""
    server = BerthServer(tmp / "server", log_dir=tmp,
                         extra_args=["--agent-heartbeat-secs", "1", "--agent-timeout-secs", "5",
                                     "--service-interval-ms", "500", *extra_args]).start()
    ecs = server.client("ecs")
    aws = server.aws(tmp / "cli")
    ecs.create_cluster(clusterName=CLUSTER)
    env = hermetic_env()
    env.update(AWS_ACCESS_KEY_ID=ROOT_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY=ROOT_SECRET_ACCESS_KEY,
               RUST_LOG="info", NO_COLOR="1")
    agent = subprocess.Popen(
        [str(berth_binary()), "agent", "--server", server.endpoint, "--cluster", CLUSTER,
         "--runtime", "simulated", "--instances", "3", "--data-dir", str(tmp / "agents"),
         "--poll-interval-ms", "300"],
        stdout=subprocess.PIPE, stderr=open(tmp / "agent.log", "a"), env=env, text=True)
    try:
        line = agent.stdout.readline()
        assert "registered 3 simulated instances" in line, line
        yield server, ecs, aws
    finally:
        agent.terminate()
        agent.wait(timeout=30)
        server.kill()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    with running_fleet(tmp_path_factory.mktemp("service-deployments")) as f:
        yield f


def register(ecs, family, **extra):
    c = {"name": "app", "image": f"sim/{family}:1", "memory": 16}
    c.update(extra)
    return ecs.register_task_definition(family=family, containerDefinitions=[c])["taskDefinition"]["taskDefinitionArn"]


def listing(aws, service, *args):
    return aws("ecs", "list-service-deployments", "--cluster", CLUSTER, "--service", service, *args)


def briefs(ecs, service, **kw):
    return ecs.list_service_deployments(cluster=CLUSTER, service=service, **kw)["serviceDeployments"]


def statuses(ecs, service):
    return [b["status"] for b in briefs(ecs, service)]


def describe_deployments(ecs, arns):
    return ecs.describe_service_deployments(serviceDeploymentArns=arns)


def test_rollouts_newest_first_and_a_superseded_deployment_stopped(fleet):
    _, ecs, aws = fleet
    v1 = register(ecs, "web")
    created = aws("ecs", "create-service", "--cluster", CLUSTER, "--service-name", "web",
                  "--task-definition", "web", "--desired-count", "2")["service"]

    # One deployment, on its way; then SUCCESSFUL once the tasks run.
    first = listing(aws, "web")["serviceDeployments"]
    assert len(first) == 1
    assert first[0]["status"] in ("PENDING", "IN_PROGRESS")
    assert first[0]["serviceArn"] == created["serviceArn"]
    assert first[0]["clusterArn"] == f"arn:aws:ecs:{REGION}:{ACCOUNT_ID}:cluster/{CLUSTER}"
    assert first[0]["serviceDeploymentArn"].startswith(
        f"arn:aws:ecs:{REGION}:{ACCOUNT_ID}:service-deployment/{CLUSTER}/web/")
    assert first[0]["targetServiceRevisionArn"].startswith(
        f"arn:aws:ecs:{REGION}:{ACCOUNT_ID}:service-revision/{CLUSTER}/web/")
    wait_for(lambda: statuses(ecs, "web") == ["SUCCESSFUL"], timeout=60, what="first deployment SUCCESSFUL")
    [d1] = describe_deployments(ecs, [first[0]["serviceDeploymentArn"]])["serviceDeployments"]
    assert d1["createdAt"] <= d1["startedAt"] <= d1["finishedAt"]
    assert "stoppedAt" not in d1
    assert d1["targetServiceRevision"]["requestedTaskCount"] == 2
    assert d1["targetServiceRevision"]["runningTaskCount"] == 2
    assert d1["sourceServiceRevisions"] == []
    assert d1["deploymentCircuitBreaker"]["status"] == "DISABLED"
    assert d1["deploymentConfiguration"]["maximumPercent"] == 200

    # A new task definition: a second deployment, listed first, whose source
    # is the first one's revision; both SUCCESSFUL after the rollout.
    v2 = register(ecs, "web", environment=[{"name": "V", "value": "2"}])
    ecs.update_service(cluster=CLUSTER, service="web", taskDefinition="web")
    wait_for(lambda: statuses(ecs, "web") == ["SUCCESSFUL", "SUCCESSFUL"], timeout=90,
             what="second deployment SUCCESSFUL")
    b2, b1 = briefs(ecs, "web")
    assert b1["serviceDeploymentArn"] == first[0]["serviceDeploymentArn"]
    assert b2["createdAt"] > b1["createdAt"]
    [d2] = describe_deployments(ecs, [b2["serviceDeploymentArn"]])["serviceDeployments"]
    assert [s["arn"] for s in d2["sourceServiceRevisions"]] == [b1["targetServiceRevisionArn"]]
    assert d2["sourceServiceRevisions"][0]["runningTaskCount"] == 0, "the old tasks drained"

    # A revision that can never be placed stays IN_PROGRESS; the next
    # update supersedes it: STOPPED, with when and why.
    register(ecs, "huge", memory=1_000_000)
    ecs.update_service(cluster=CLUSTER, service="web", taskDefinition="huge")
    wait_for(lambda: statuses(ecs, "web")[0] == "IN_PROGRESS", timeout=30, what="huge IN_PROGRESS")
    ecs.update_service(cluster=CLUSTER, service="web", taskDefinition=v2)
    got = statuses(ecs, "web")
    assert got[1] == "STOPPED" and got[0] in ("PENDING", "IN_PROGRESS"), got
    wait_for(lambda: statuses(ecs, "web") == ["SUCCESSFUL", "STOPPED", "SUCCESSFUL", "SUCCESSFUL"],
             timeout=90, what="the deployment after the stopped one SUCCESSFUL")
    b4, b3, _, _ = briefs(ecs, "web")
    [d3] = describe_deployments(ecs, [b3["serviceDeploymentArn"]])["serviceDeployments"]
    assert d3["stoppedAt"] >= d3["startedAt"] and d3["statusReason"]

    # The revisions: what each deployment deployed.
    out = aws("ecs", "describe-service-revisions", "--service-revision-arns",
              b1["targetServiceRevisionArn"], b3["targetServiceRevisionArn"], b4["targetServiceRevisionArn"],
              f"arn:aws:ecs:{REGION}:{ACCOUNT_ID}:service-revision/{CLUSTER}/web/1")
    r1, r3, r4 = out["serviceRevisions"]
    assert r1["taskDefinition"] == v1 and r4["taskDefinition"] == v2
    assert r3["taskDefinition"].endswith("task-definition/huge:1")
    assert r1["serviceRevisionArn"] == b1["targetServiceRevisionArn"]
    assert r1["serviceArn"] == created["serviceArn"] and r1["launchType"] == "EC2"
    assert r1["containerImages"] == [{"containerName": "app", "image": "sim/web:1"}]
    assert isinstance(r1["createdAt"], (int, float))
    assert out["failures"] == [{"arn": f"arn:aws:ecs:{REGION}:{ACCOUNT_ID}:service-revision/{CLUSTER}/web/1",
                                "reason": "MISSING"}]

    # Filters.
    stopped = listing(aws, "web", "--status", "STOPPED")["serviceDeployments"]
    assert [b["serviceDeploymentArn"] for b in stopped] == [b3["serviceDeploymentArn"]]
    ok = briefs(ecs, "web", status=["SUCCESSFUL", "ROLLBACK_SUCCESSFUL"])
    assert len(ok) == 3
    assert briefs(ecs, "web", status=["ROLLBACK_FAILED"]) == []
    # botocore sends createdAt in whole seconds: cut at the second after
    # the first deployment (the later ones came seconds after it).
    all_briefs = briefs(ecs, "web")
    at = datetime.datetime.fromtimestamp(math.floor(b1["createdAt"].timestamp()) + 1, tz=datetime.timezone.utc)
    newer = [b for b in all_briefs if b["createdAt"] > at]
    older = [b for b in all_briefs if b["createdAt"] < at]
    assert b1 in older and b4 in newer
    assert briefs(ecs, "web", createdAt={"after": at}) == newer
    assert briefs(ecs, "web", createdAt={"before": at}) == older
    assert briefs(ecs, "web", createdAt={"after": at, "before": at}) == []

    # Pages of one with the CLI, following nextToken: the whole list once.
    everything = listing(aws, "web")["serviceDeployments"]
    assert "nextToken" not in listing(aws, "web")
    seen, token = [], None
    for _ in range(10):
        page = listing(aws, "web", "--max-results", "1", *(["--next-token", token] if token else []))
        assert len(page["serviceDeployments"]) == 1
        seen += page["serviceDeployments"]
        token = page.get("nextToken")
        if not token:
            break
    assert seen == everything and len(seen) == 4
    page = ecs.list_service_deployments(cluster=CLUSTER, service="web", maxResults=3)
    rest = ecs.list_service_deployments(cluster=CLUSTER, service="web", nextToken=page["nextToken"])
    assert page["serviceDeployments"] + rest["serviceDeployments"] == all_briefs
    assert "nextToken" not in rest


def test_a_broken_revision_is_rolled_back_by_the_circuit_breaker(fleet):
    _, ecs, aws = fleet
    good = register(ecs, "cb")
    aws("ecs", "create-service", "--cluster", CLUSTER, "--service-name", "cb", "--task-definition", "cb",
        "--desired-count", "3", "--deployment-configuration",
        "deploymentCircuitBreaker={enable=true,rollback=true}")
    wait_for(lambda: statuses(ecs, "cb") == ["SUCCESSFUL"], timeout=60, what="cb SUCCESSFUL")
    register(ecs, "cb", dockerLabels={SIM_BEHAVIOR: "fail:simulated start failure"})
    ecs.update_service(cluster=CLUSTER, service="cb", taskDefinition="cb")

    seen = set()

    def rolled_back():
        got = statuses(ecs, "cb")
        seen.add(got[0])
        return got == ["ROLLBACK_SUCCESSFUL", "SUCCESSFUL"]

    wait_for(rolled_back, timeout=120, interval=0.2, what="ROLLBACK_SUCCESSFUL")
    assert seen <= {"PENDING", "IN_PROGRESS", "ROLLBACK_IN_PROGRESS", "ROLLBACK_SUCCESSFUL"}, seen
    bad_brief, good_brief = briefs(ecs, "cb")
    out = aws("ecs", "describe-service-deployments", "--service-deployment-arns",
              bad_brief["serviceDeploymentArn"], good_brief["serviceDeploymentArn"])
    assert out["failures"] == []
    bad, ok = out["serviceDeployments"]
    assert bad["serviceDeploymentArn"] == bad_brief["serviceDeploymentArn"]
    assert bad["rollback"]["serviceRevisionArn"] == ok["targetServiceRevision"]["arn"]
    assert "circuit breaker" in bad["rollback"]["reason"]
    assert "circuit breaker" in bad["statusReason"]
    assert bad["startedAt"] <= bad["rollback"]["startedAt"] <= bad["finishedAt"]
    cb = bad["deploymentCircuitBreaker"]
    assert cb["status"] == "TRIGGERED" and cb["threshold"] == 3 and cb["failureCount"] >= 3
    assert ok["deploymentCircuitBreaker"]["status"] == "MONITORING_COMPLETE"
    # The rolled-back-to revision runs the service's 3 tasks again.
    [source] = bad["sourceServiceRevisions"]
    assert source["arn"] == ok["targetServiceRevision"]["arn"]
    assert source["runningTaskCount"] == 3 and source["requestedTaskCount"] == 3
    assert bad["targetServiceRevision"]["runningTaskCount"] == 0
    svc = ecs.describe_services(cluster=CLUSTER, services=["cb"])["services"][0]
    assert svc["taskDefinition"] == good
    rev = ecs.describe_service_revisions(serviceRevisionArns=[bad["targetServiceRevision"]["arn"]])
    assert rev["serviceRevisions"][0]["taskDefinition"].endswith("task-definition/cb:2")


def test_missing_and_bad_requests(fleet):
    _, ecs, aws = fleet
    register(ecs, "err")
    ecs.create_service(cluster=CLUSTER, serviceName="err", taskDefinition="err", desiredCount=0)
    [brief] = briefs(ecs, "err")
    by_arn = ecs.list_service_deployments(
        cluster=CLUSTER, service=f"arn:aws:ecs:{REGION}:{ACCOUNT_ID}:service/{CLUSTER}/err")
    assert by_arn["serviceDeployments"][0]["serviceDeploymentArn"] == brief["serviceDeploymentArn"]

    unknown = f"arn:aws:ecs:{REGION}:{ACCOUNT_ID}:service-deployment/{CLUSTER}/err/404"
    elsewhere = f"arn:aws:ecs:eu-west-1:{ACCOUNT_ID}:service-deployment/{CLUSTER}/err/1"
    out = aws("ecs", "describe-service-deployments", "--service-deployment-arns",
              unknown, brief["serviceDeploymentArn"], elsewhere)
    assert [d["serviceDeploymentArn"] for d in out["serviceDeployments"]] == [brief["serviceDeploymentArn"]]
    assert out["failures"] == [{"arn": unknown, "reason": "MISSING"}, {"arn": elsewhere, "reason": "MISSING"}]

    err = aws.fail("ecs", "list-service-deployments", "--cluster", "no-such-cluster", "--service", "err")
    assert err.code == "ClusterNotFoundException"
    err = aws.fail("ecs", "list-service-deployments", "--cluster", CLUSTER, "--service", "no-such-service")
    assert err.code == "ServiceNotFoundException"
    err = aws.fail("ecs", "list-service-deployments", "--cluster", CLUSTER, "--service", "err", "--status", "DONE")
    assert err.code == "InvalidParameterException" and "DONE" in err.message
    assert_client_error(lambda: ecs.list_service_deployments(cluster=CLUSTER, service="err", maxResults=101),
                        "InvalidParameterException")
    assert_client_error(lambda: ecs.list_service_deployments(cluster=CLUSTER, service="err", maxResults=0),
                        "InvalidParameterException")
    assert_client_error(lambda: ecs.list_service_deployments(cluster=CLUSTER, service="err", nextToken="garbage"),
                        "InvalidParameterException")
    assert_client_error(lambda: ecs.list_service_deployments(cluster=CLUSTER, service=""),
                        "InvalidParameterException")
    assert_client_error(lambda: ecs.describe_service_deployments(serviceDeploymentArns=[]),
                        "InvalidParameterException")
    assert_client_error(lambda: ecs.describe_service_deployments(serviceDeploymentArns=[unknown] * 21),
                        "InvalidParameterException")
    e = assert_client_error(lambda: ecs.describe_service_deployments(serviceDeploymentArns=["err"]),
                            "InvalidParameterException")
    assert "err" in e["Error"]["Message"]
    assert_client_error(lambda: ecs.describe_service_revisions(serviceRevisionArns=[brief["serviceDeploymentArn"]]),
                        "InvalidParameterException")
    err = aws.fail("ecs", "describe-service-revisions", "--service-revision-arns", "not-an-arn")
    assert err.code == "InvalidParameterException"

    # A deleted service stops its unfinished deployment; its records stay.
    register(ecs, "gone", memory=1_000_000)
    ecs.create_service(cluster=CLUSTER, serviceName="gone", taskDefinition="gone", desiredCount=1)
    wait_for(lambda: statuses(ecs, "gone") == ["IN_PROGRESS"], timeout=30, what="gone IN_PROGRESS")
    ecs.delete_service(cluster=CLUSTER, service="gone", force=True)
    [b] = briefs(ecs, "gone")
    assert b["status"] == "STOPPED" and b["finishedAt"] >= b["createdAt"]
    print(json.dumps(b, default=str))


def test_finished_deployments_are_deleted_after_their_retention(tmp_path):
    # Two seconds of retention instead of ECS's 90 days.
    with running_fleet(tmp_path, ["--service-deployment-retention-secs", "2"]) as (_, ecs, aws):
        register(ecs, "ret")
        aws("ecs", "create-service", "--cluster", CLUSTER, "--service-name", "ret",
            "--task-definition", "ret", "--desired-count", "1")
        wait_for(lambda: statuses(ecs, "ret") == ["SUCCESSFUL"], timeout=60, what="first SUCCESSFUL")
        [old] = briefs(ecs, "ret")
        register(ecs, "ret", environment=[{"name": "V", "value": "2"}])
        ecs.update_service(cluster=CLUSTER, service="ret", taskDefinition="ret")

        def newest():
            b = briefs(ecs, "ret")[0]
            return b if b["serviceDeploymentArn"] != old["serviceDeploymentArn"] else None

        wait_for(lambda: (newest() or {}).get("status") == "SUCCESSFUL", timeout=90, what="second SUCCESSFUL")
        current = newest()
        # The old one ended and left the service: it goes. The current one
        # is as old but still the service's deployment: it stays, and so
        # does the old revision it names as its source.
        wait_for(lambda: len(briefs(ecs, "ret")) == 1, timeout=30, what="the old deployment reaped")
        assert briefs(ecs, "ret")[0]["serviceDeploymentArn"] == current["serviceDeploymentArn"]
        out = aws("ecs", "describe-service-deployments", "--service-deployment-arns",
                  old["serviceDeploymentArn"], current["serviceDeploymentArn"])
        assert out["failures"] == [{"arn": old["serviceDeploymentArn"], "reason": "MISSING"}]
        assert [s["arn"] for s in out["serviceDeployments"][0]["sourceServiceRevisions"]] == \
            [old["targetServiceRevisionArn"]]
        revs = aws("ecs", "describe-service-revisions", "--service-revision-arns",
                   old["targetServiceRevisionArn"], current["targetServiceRevisionArn"])
        assert len(revs["serviceRevisions"]) == 2 and revs["failures"] == []
        # Deleted, the service's last deployment and both revisions go.
        ecs.delete_service(cluster=CLUSTER, service="ret", force=True)
        wait_for(lambda: briefs(ecs, "ret") == [], timeout=60, what="the last deployment reaped")
        revs = aws("ecs", "describe-service-revisions", "--service-revision-arns",
                   old["targetServiceRevisionArn"], current["targetServiceRevisionArn"])
        assert revs["serviceRevisions"] == []
        assert sorted(f["arn"] for f in revs["failures"]) == \
            sorted([old["targetServiceRevisionArn"], current["targetServiceRevisionArn"]])
