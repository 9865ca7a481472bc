"""Crash consistency: writers hammer a server, which is killed with SIGKILL
at a random moment; after a restart on the same data dir every acknowledged
write is there, revisions have no gaps or duplicates, and numbering goes on.
"""

import os
import random
import threading
import time

from berthlib import task_definition_arn

ROUNDS = 3
REGISTER_THREADS = 4
CLUSTER_THREADS = 2
FAMILY = "crash-family"
# Every acknowledged revision of the last moments before each kill is
# checked; of the others, a random sample this large.
SAMPLE = 150


class Writers:
    """Writer threads that record exactly what the server acknowledged."""

    def __init__(self, server, round_no):
        self.server = server
        self.round_no = round_no
        self.lock = threading.Lock()
        self.acked_revisions: list[tuple[int, str]] = []  # in acknowledgment order
        self.acked_clusters: list[str] = []
        self.unexpected: list[str] = []
        self.killing = threading.Event()
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []

    def start(self):
        for i in range(REGISTER_THREADS):
            client = self.server.client("ecs", connect_timeout=2, read_timeout=10)
            self.threads.append(threading.Thread(target=self._register, args=(client, i), daemon=True))
        for i in range(CLUSTER_THREADS):
            client = self.server.client("ecs", connect_timeout=2, read_timeout=10)
            self.threads.append(threading.Thread(target=self._clusters, args=(client, i), daemon=True))
        for t in self.threads:
            t.start()

    def _failed(self, what, exc):
        if not self.killing.is_set():
            with self.lock:
                self.unexpected.append(f"{what}: {type(exc).__name__}: {exc}")

    def _register(self, client, thread_no):
        n = 0
        while not self.stop.is_set():
            marker = f"r{self.round_no}-t{thread_no}-n{n}"
            n += 1
            try:
                td = client.register_task_definition(
                    family=FAMILY,
                    containerDefinitions=[{
                        "name": "app", "image": "busybox", "memory": 32,
                        "environment": [{"name": "MARKER", "value": marker}],
                    }],
                )["taskDefinition"]
            except Exception as e:  # noqa: BLE001 - connection errors after the kill are expected
                self._failed(f"register {marker}", e)
                return
            with self.lock:
                self.acked_revisions.append((td["revision"], marker))

    def _clusters(self, client, thread_no):
        n = 0
        while not self.stop.is_set():
            name = f"crash-r{self.round_no}-t{thread_no}-n{n}"
            n += 1
            try:
                c = client.create_cluster(clusterName=name)["cluster"]
            except Exception as e:  # noqa: BLE001
                self._failed(f"create-cluster {name}", e)
                return
            assert c["clusterName"] == name
            with self.lock:
                self.acked_clusters.append(name)

    def kill_and_join(self):
        self.killing.set()
        self.server.kill()
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)
            assert not t.is_alive(), "a writer thread hangs after the kill"


def listed_revisions(ecs):
    revisions = []
    for status in ("ACTIVE", "INACTIVE"):
        for page in ecs.get_paginator("list_task_definitions").paginate(familyPrefix=FAMILY, status=status):
            for arn in page["taskDefinitionArns"]:
                assert arn.startswith(task_definition_arn(FAMILY, 0)[:-1]), arn
                revisions.append(int(arn.rsplit(":", 1)[1]))
    return revisions


def verify(server, acked_revisions, acked_clusters, must_check, rng):
    ecs = server.client("ecs")
    revisions = listed_revisions(ecs)
    assert len(revisions) == len(set(revisions)), "duplicate revisions listed"
    top = max(revisions, default=0)
    assert sorted(revisions) == list(range(1, top + 1)), f"gaps in revisions: {sorted(set(range(1, top + 1)) - set(revisions))}"

    missing = sorted(set(acked_revisions) - set(revisions))
    assert not missing, f"acknowledged revisions lost after kill -9: {missing[:20]} ({len(missing)} in all)"

    to_check = set(must_check) | set(rng.sample(sorted(acked_revisions), min(SAMPLE, len(acked_revisions))))
    for rev in sorted(to_check):
        td = ecs.describe_task_definition(taskDefinition=f"{FAMILY}:{rev}")["taskDefinition"]
        env = {e["name"]: e["value"] for e in td["containerDefinitions"][0]["environment"]}
        assert env.get("MARKER") == acked_revisions[rev], (
            f"revision {rev} holds {env.get('MARKER')}, but the server acknowledged it for {acked_revisions[rev]}"
        )

    names = sorted(acked_clusters)
    for i in range(0, len(names), 100):
        batch = names[i:i + 100]
        resp = ecs.describe_clusters(clusters=batch)
        assert resp["failures"] == [], f"acknowledged clusters lost: {resp['failures'][:10]}"
        got = {c["clusterName"]: c["status"] for c in resp["clusters"]}
        assert got == {n: "ACTIVE" for n in batch}
    return top


def test_kill9_loses_no_acknowledged_write(berth_factory):
    seed = int(os.environ.get("BERTH_E2E_SEED", time.time_ns() % 1_000_000))
    rng = random.Random(seed)
    print(f"crash test seed {seed} (set BERTH_E2E_SEED to replay)")
    server = berth_factory.new("crash")

    acked_revisions: dict[int, str] = {}
    acked_clusters: set[str] = set()
    must_check: set[int] = set()

    for round_no in range(ROUNDS + 1):
        server.start()
        top = verify(server, acked_revisions, acked_clusters, must_check, rng)
        # Numbering continues right after the highest revision in the store.
        next_td = server.client("ecs").register_task_definition(
            family=FAMILY,
            containerDefinitions=[{"name": "app", "image": "busybox", "memory": 32,
                                   "environment": [{"name": "MARKER", "value": f"after-{round_no}"}]}],
        )["taskDefinition"]
        assert next_td["revision"] == top + 1, f"after restart got revision {next_td['revision']}, expected {top + 1}"
        acked_revisions[next_td["revision"]] = f"after-{round_no}"
        if round_no == ROUNDS:
            server.stop()
            break

        writers = Writers(server, round_no)
        writers.start()
        delay = rng.uniform(0.5, 2.0)
        time.sleep(delay)  # not synchronization: the random moment of the crash
        writers.kill_and_join()

        assert not writers.unexpected, f"errors before the kill: {writers.unexpected[:5]}"
        revs = [r for r, _ in writers.acked_revisions]
        dupes = sorted({r for r in revs if revs.count(r) > 1})
        assert not dupes, f"round {round_no}: one revision acknowledged twice: {dupes}"
        assert revs, f"round {round_no}: no registration acknowledged in {delay:.2f}s"
        assert writers.acked_clusters, f"round {round_no}: no cluster acknowledged in {delay:.2f}s"
        for r, marker in writers.acked_revisions:
            assert r not in acked_revisions, f"revision {r} acknowledged again in round {round_no}"
            acked_revisions[r] = marker
        acked_clusters.update(writers.acked_clusters)
        must_check.update(r for r, _ in writers.acked_revisions[-25:])
        print(f"round {round_no}: killed after {delay:.2f}s with {len(revs)} registrations "
              f"and {len(writers.acked_clusters)} clusters acknowledged")
