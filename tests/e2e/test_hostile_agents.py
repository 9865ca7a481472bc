"""Agents as attackers: each container instance signs with its own key,
issued at registration and kept 0600 by its agent, and that key acts only
for its own instance and tasks. A forged state change for another host's
task is refused; root keys keep working for humans."""

import json
import stat

import pytest

from berthlib import BerthAgent, assert_client_error, http, make_client, wait_for


def _key(agent: BerthAgent) -> tuple[str, str]:
    path = agent.data_dir / "agent-credentials.json"
    mode = stat.S_IMODE(path.stat().st_mode)
    assert mode == 0o600, oct(mode)
    assert stat.S_IMODE(agent.data_dir.stat().st_mode) == 0o700
    doc = json.loads(path.read_text())
    return doc["accessKeyId"], doc["secretAccessKey"]


@pytest.fixture
def two_agents(berth, aws, tmp_path, unique):
    cluster = unique("keys")
    aws("ecs", "create-cluster", "--cluster-name", cluster)
    agents = []
    for name in ("a", "b"):
        agents.append(BerthAgent(berth.endpoint, tmp_path / name, tmp_path / f"{name}.log", "us-east-1a",
                                 cluster=cluster, extra_args=["--runtime", "simulated"]).start())
    yield cluster, agents
    for a in agents:
        a.stop()


def test_a_forged_state_change_with_another_instances_key_is_refused(berth, aws, two_agents):
    cluster, (a, b) = two_agents
    aws("ecs", "register-task-definition", "--family", "keys",
        "--container-definitions", '[{"name":"app","image":"sim/any:1","memory":64}]')
    task = aws("ecs", "start-task", "--cluster", cluster, "--task-definition", "keys",
               "--container-instances", b.arn)["tasks"][0]["taskArn"]

    def running():
        t = aws("ecs", "describe-tasks", "--cluster", cluster, "--tasks", task)["tasks"][0]
        return t["lastStatus"] == "RUNNING"
    wait_for(running, timeout=30, what="the task on b running")

    akid, secret = _key(a)
    as_a = make_client("ecs", berth.endpoint, akid, secret)
    # A's key cannot stop, re-bind or read b's task...
    assert_client_error(lambda: as_a.submit_task_state_change(
        cluster=cluster, task=task, status="STOPPED", reason="forged"), "AccessDeniedException", status=None)
    assert_client_error(lambda: as_a.submit_container_state_change(
        cluster=cluster, task=task, containerName="app", status="STOPPED", exitCode=1),
        "AccessDeniedException", status=None)
    assert_client_error(lambda: as_a.describe_tasks(cluster=cluster, tasks=[task]), "AccessDeniedException", status=None)
    assert_client_error(lambda: as_a.list_tasks(cluster=cluster, containerInstance=b.arn),
                        "AccessDeniedException", status=None)
    # ...nor act as an account.
    assert_client_error(lambda: as_a.create_cluster(clusterName="stolen"), "AccessDeniedException", status=None)
    assert_client_error(lambda: as_a.deregister_container_instance(
        cluster=cluster, containerInstance=b.arn, force=True), "AccessDeniedException", status=None)
    ecr_a = make_client("ecr", berth.endpoint, akid, secret)
    assert_client_error(lambda: ecr_a.describe_repositories(), "AccessDeniedException", status=None)
    # What its own agent needs still works: a registry token, which pulls
    # but does not push.
    repo = f"{cluster}-repo"
    aws("ecr", "create-repository", "--repository-name", repo)
    token = ecr_a.get_authorization_token()["authorizationData"][0]["authorizationToken"]
    basic = {"Authorization": f"Basic {token}"}
    assert http().get(f"{berth.endpoint}/v2/{repo}/tags/list", headers=basic).status_code == 200
    push = http().post(f"{berth.endpoint}/v2/{repo}/blobs/uploads/", headers=basic)
    assert push.status_code == 403 and push.json()["errors"][0]["code"] == "DENIED", push.text
    assert as_a.list_tasks(cluster=cluster, containerInstance=a.arn)["taskArns"] == []

    # The task was never touched.
    t = aws("ecs", "describe-tasks", "--cluster", cluster, "--tasks", task)["tasks"][0]
    assert t["lastStatus"] == "RUNNING" and t["desiredStatus"] == "RUNNING", t
    # Root keys keep working for humans.
    aws("ecs", "stop-task", "--cluster", cluster, "--task", task)


def test_deregistration_revokes_the_instances_key(berth, aws, two_agents):
    cluster, (a, _) = two_agents
    akid, secret = _key(a)
    as_a = make_client("ecs", berth.endpoint, akid, secret)
    as_a.list_tasks(cluster=cluster, containerInstance=a.arn)
    a.stop()
    aws("ecs", "deregister-container-instance", "--cluster", cluster, "--container-instance", a.arn,
        "--force")
    assert_client_error(lambda: as_a.list_tasks(cluster=cluster, containerInstance=a.arn),
                        "UnrecognizedClientException", status=None)
