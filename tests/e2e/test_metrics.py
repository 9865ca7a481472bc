"""/healthz and the Prometheus /metrics endpoint."""

from berthlib import parse_metrics


def request_count(server, operation):
    status, body = server.get("/metrics")
    assert status == 200, body
    total = 0.0
    for name, labels, value in parse_metrics(body.decode()):
        if "request" in name and name.endswith("_total") and labels.get("operation") == operation:
            total += value
    return total, body.decode()


def test_healthz(berth):
    status, body = berth.get("/healthz")
    assert status == 200
    assert body.strip() == b"ok"


def test_metrics_count_requests_per_operation(berth_factory):
    server = berth_factory.start("metrics")
    ecs = server.client("ecs")
    before, _ = request_count(server, "ListClusters")
    for _ in range(3):
        ecs.list_clusters()
    ecs.create_cluster(clusterName="m")
    try:
        ecs.delete_cluster(cluster="not-there")
    except Exception:  # noqa: BLE001 - an error is counted too
        pass
    after, text = request_count(server, "ListClusters")
    assert after - before == 3, text
    created, _ = request_count(server, "CreateCluster")
    assert created == 1, text
    deleted, _ = request_count(server, "DeleteCluster")
    assert deleted == 1, text
    assert "berth_api_requests_total" in text
    # The error outcome is visible somewhere in the DeleteCluster samples.
    samples = [(n, l) for n, l, _ in parse_metrics(text) if l.get("operation") == "DeleteCluster"]
    assert any("ClusterNotFoundException" in l.values() for _, l in samples), samples
    # Latency is recorded per operation too.
    assert any(
        ("duration" in n or "latency" in n) and l.get("operation") == "ListClusters" for n, l, _ in parse_metrics(text)
    ), text
