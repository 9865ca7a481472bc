"""Concurrent writers to one resource never lose an update."""

from concurrent.futures import ThreadPoolExecutor

from berthlib import tags_dict, task_definition_arn

THREADS = 6


def run_all(fn, n=THREADS):
    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(fn, range(n)))


def test_concurrent_tagging_of_one_cluster(berth, unique):
    name = unique("conc-tags")
    clients = [berth.client("ecs") for _ in range(THREADS)]
    arn = clients[0].create_cluster(clusterName=name)["cluster"]["clusterArn"]

    def tag(i):
        for j in range(8):
            clients[i].tag_resource(resourceArn=arn, tags=[{"key": f"t{i}-{j}", "value": str(j)}])

    run_all(tag)
    tags = tags_dict(clients[0].list_tags_for_resource(resourceArn=arn)["tags"])
    expected = {f"t{i}-{j}": str(j) for i in range(THREADS) for j in range(8)}
    assert tags == expected, f"lost tags: {sorted(set(expected) - set(tags))}"


def test_concurrent_attributes_on_one_instance(berth, unique):
    cluster = unique("conc-attrs")
    clients = [berth.client("ecs") for _ in range(THREADS)]
    clients[0].create_cluster(clusterName=cluster)
    arn = clients[0].register_container_instance(
        cluster=cluster,
        totalResources=[
            {"name": "CPU", "type": "INTEGER", "integerValue": 1024},
            {"name": "MEMORY", "type": "INTEGER", "integerValue": 1024},
        ],
    )["containerInstance"]["containerInstanceArn"]

    # ECS allows 10 custom attributes a resource: 5 writers put 2 each.
    def put(i):
        for j in range(2):
            clients[i].put_attributes(
                cluster=cluster,
                attributes=[{"name": f"a{i}-{j}", "value": "v", "targetType": "container-instance", "targetId": arn}],
            )

    run_all(put, 5)
    got = {
        a["name"]
        for p in clients[0].get_paginator("list_attributes").paginate(cluster=cluster, targetType="container-instance")
        for a in p["attributes"]
    }
    expected = {f"a{i}-{j}" for i in range(5) for j in range(2)}
    assert expected <= got, f"lost attributes: {sorted(expected - got)}"


def test_concurrent_registrations_in_one_family(berth, unique):
    family = unique("conc-td")
    clients = [berth.client("ecs") for _ in range(THREADS)]

    def register(i):
        return [
            clients[i].register_task_definition(
                family=family, containerDefinitions=[{"name": "app", "image": "busybox", "memory": 32}]
            )["taskDefinition"]["revision"]
            for _ in range(10)
        ]

    revisions = sorted(r for rs in run_all(register) for r in rs)
    assert revisions == list(range(1, THREADS * 10 + 1))
    listed = [a for p in clients[0].get_paginator("list_task_definitions").paginate(familyPrefix=family)
              for a in p["taskDefinitionArns"]]
    assert listed == [task_definition_arn(family, r) for r in revisions]


def test_concurrent_create_of_one_cluster(berth, unique):
    name = unique("conc-cl")
    clients = [berth.client("ecs") for _ in range(THREADS)]
    arns = run_all(lambda i: clients[i].create_cluster(clusterName=name)["cluster"]["clusterArn"])
    assert len(set(arns)) == 1
    d = clients[0].describe_clusters(clusters=[name])
    assert [c["status"] for c in d["clusters"]] == ["ACTIVE"]
