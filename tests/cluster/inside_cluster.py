"""The cluster tests that run inside a private network namespace (``test_cluster_scan.py``
starts them there; pytest collects this file only when given it by name).

A two-node cluster (``ray.cluster_utils.Cluster``, one CPU each: two scan workers, one
probe actor) scans the scenario world, started in the same namespace: its results equal a
single-process scan's per domain (timestamps, timings and scan metadata aside), and a driver
killed with -9 mid-scan resumes to the same results, each domain once.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.netns import inside

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(autouse=True, scope="module")
def _only_inside_the_namespace() -> None:
    """Ray must never bind to this machine's real interfaces."""
    if not inside():
        pytest.fail("run under unshare -n through tests/cluster/netns.py (see test_cluster_scan.py)")


@pytest.fixture(scope="module")
def world() -> Iterator[Any]:
    from testbed.control import WorldSpec
    from testbed.harness import running_world

    with running_world(WorldSpec("scenarios")) as running:
        yield running


@pytest.fixture(scope="module")
def nodes() -> Iterator[Any]:
    """Two Ray nodes of one CPU each on 127.0.0.1 (``ray.cluster_utils.Cluster``); their
    processes stopped and their files removed at the end (a short temporary directory of
    their own: Ray's default, /tmp/ray, keeps every session)."""
    from ray.cluster_utils import Cluster

    temp = tempfile.mkdtemp(prefix="mxt-ray-", dir="/tmp")
    head = {"num_cpus": 1, "include_dashboard": False, "temp_dir": temp}
    started = Cluster(initialize_head=True, head_node_args=head)
    try:
        started.add_node(num_cpus=1, temp_dir=temp)
        started.wait_for_nodes()
        yield started
    finally:
        started.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster(nodes: Any) -> str:
    """The cluster's address, as ``--cluster`` takes it."""
    return str(nodes.address)


def _argv(world: Any, out: Path, *extra: str) -> list[str]:
    from tests.e2e.worldscan import world_scan_argv

    return world_scan_argv(world.endpoints, world.state_dir / "domains.txt", out, *extra)


def _scan(world: Any, out: Path, *extra: str, env: dict[str, str] | None = None) -> str:
    """The scan's stderr (it exited 0)."""
    argv = _argv(world, out, *extra)
    run = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
    assert run.returncode == 0, run.stderr[-4000:]
    return run.stderr


def _batches_per_worker(stderr: str) -> list[int]:
    """The driver's last line says how many batches each worker slot measured."""
    found = re.search(r"batches per worker: ([\d, ]+)$", stderr.strip())
    assert found, stderr[-2000:]
    return [int(n) for n in found[1].split(",")]


@pytest.fixture(scope="module")
def single(world: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("single") / "single.ndjson"
    _scan(world, out)
    return out


def test_a_two_node_cluster_scan_equals_a_single_process_scan(
    world: Any, cluster: str, single: Path, tmp_path: Path
) -> None:
    from engine.checkpoint import finished
    from tests.e2e.test_shard_merge import _comparable as comparable

    out = tmp_path / "cluster.ndjson"
    stderr = _scan(world, out, "--cluster", cluster)
    counts = _batches_per_worker(stderr)
    assert len(counts) == 2 and min(counts) > 0, counts  # both nodes' workers measured domains
    expected, got = comparable(single), comparable(out)
    assert set(got) == set(expected)
    different = [domain for domain in expected if got[domain] != expected[domain]]
    assert not different, (different[:5], [(got[d], expected[d]) for d in different[:1]])
    assert finished(out)


def test_a_cluster_scan_shows_the_preflight_warnings_once_as_one_machine_does(
    world: Any, cluster: str, tmp_path: Path
) -> None:
    """The workers run the vantage check; its warnings (here: an EHLO name with no address)
    reach the user as a single-machine scan says them, once each however many workers say
    them (they were once kept inside the workers)."""
    listing = tmp_path / "two.txt"
    listing.write_text("valid.scenario.test\nno-starttls.scenario.test\n")
    from tests.e2e.worldscan import world_scan_argv

    nameless = "nameless.mxscan.test"

    def warnings(out: str, *extra: str) -> list[str]:
        argv = world_scan_argv(world.endpoints, listing, tmp_path / out, "--ehlo-name", nameless)
        run = subprocess.run([*argv, *extra], cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr[-3000:]
        return [line for line in run.stderr.splitlines() if "WARNING" in line]

    single = warnings("single.ndjson")
    assert any(f"{nameless} resolves to no address" in line for line in single), single
    assert warnings("cluster.ndjson", "--cluster", cluster) == single


def test_a_driver_killed_with_9_resumes_to_the_same_results(
    world: Any, cluster: str, single: Path, tmp_path: Path
) -> None:
    """kill -9 once the file has its first lines (mid-scan: some domains written, no run
    line); the same command again measures only the rest and finishes the file."""
    from engine.checkpoint import finished
    from tests.e2e.test_shard_merge import _comparable as comparable

    out = tmp_path / "killed.ndjson"
    driver = _start(world, out, cluster)
    os.kill(driver.pid, signal.SIGKILL)
    driver.communicate(timeout=60)
    expected = comparable(single)
    before = len(comparable(out))
    assert not finished(out) and 0 < before < len(expected), before
    stderr = _scan(world, out, "--cluster", cluster)
    assert f"done, {len(expected) - before} records written this run" in stderr, stderr[-2000:]
    assert finished(out)
    assert comparable(out) == expected  # comparable() refuses a domain written twice


#: The throttling provider of test_provider_limits: its one mail process counts the peak of
#: connections open at once over all its hosts, and greets each one above 4 with 421.
SERVER_LIMIT = 4
THROTTLE_PROFILE = f"sprinkle = 0.0\nthrottled = 0.5\nthrottle_limit = {SERVER_LIMIT}\n"


@pytest.fixture(scope="module")
def throttle_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from testbed.control import WorldSpec
    from testbed.harness import running_world

    profile = tmp_path_factory.mktemp("profile") / "throttle.toml"
    profile.write_text(THROTTLE_PROFILE)
    with running_world(WorldSpec("scale", 300, 3, str(profile))) as running:
        yield running


def _throttled_scan(throttle_world: Any, cluster: str, out: Path, env: dict[str, str] | None = None) -> str:
    """A cluster scan of the throttle world with ``--provider-limit`` at the throttling
    provider's own limit: its peak of open connections, counted by its server over
    everything the workers of both nodes sent, stays within it and no connection is refused
    (politeness per worker would double the peak).  The scan's stderr."""
    from testbed import control
    from testbed.scale import THROTTLE_PROVIDER, THROTTLE_ZONE

    control.mail_stats(throttle_world.state_dir, reset=True)
    retries = ("--smtp-retries", "8", "--smtp-retry-delay", "0.05", "--provider-limit", "outlook.com=32")
    limit = ("--provider-limit", f"{THROTTLE_ZONE}={SERVER_LIMIT}")
    stderr = _scan(throttle_world, out, "--cluster", cluster, *retries, *limit, env=env)
    assert min(_batches_per_worker(stderr)) > 0
    (stats,) = control.mail_stats(throttle_world.state_dir)
    assert stats["connections_per_provider"].get(THROTTLE_PROVIDER, 0) > 10 * SERVER_LIMIT
    assert 0 < stats["peak_per_provider"][THROTTLE_PROVIDER] <= SERVER_LIMIT
    assert stats["refused_421"].get(THROTTLE_PROVIDER, 0) == 0
    return stderr


def _probes_per_actor(stderr: str) -> list[int]:
    found = re.search(r"probes per probe actor: ([\d, ]+);", stderr)
    assert found, stderr[-2000:]
    return [int(n) for n in found[1].split(",")]


def test_a_provider_limit_holds_over_the_whole_cluster(
    throttle_world: Any, cluster: str, tmp_path: Path
) -> None:
    stderr = _throttled_scan(throttle_world, cluster, tmp_path / "throttle.ndjson")
    assert len(_probes_per_actor(stderr)) == 1  # two workers: one probe actor


def test_three_probe_actors_share_the_providers_and_a_limit_still_holds(
    throttle_world: Any, cluster: str, tmp_path: Path
) -> None:
    """``MXSCAN_PROBE_ACTORS=3``: the providers spread over three probe actors (each makes
    probes), and the throttling provider's limit holds over the cluster as with one."""
    env = {**os.environ, "MXSCAN_PROBE_ACTORS": "3"}
    stderr = _throttled_scan(throttle_world, cluster, tmp_path / "three.ndjson", env)
    assert "cluster: 2 scan workers, 3 probe actors" in stderr, stderr[-2000:]
    spread = _probes_per_actor(stderr)
    assert len(spread) == 3 and min(spread) > 0, spread


def _start(world: Any, out: Path, cluster: str) -> subprocess.Popen[str]:
    """A cluster scan, started once its file has its first lines (it is mid-scan then)."""
    argv = _argv(world, out, "--cluster", cluster)
    driver = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while driver.poll() is None and time.monotonic() < deadline:
        if out.exists() and out.stat().st_size > 0:
            return driver
        time.sleep(0.05)
    driver.kill()
    raise AssertionError(f"no lines in {out} while the scan ran: {driver.communicate()[1][-2000:]}")


def _finishes_equal(driver: subprocess.Popen[str], out: Path, single: Path) -> str:
    """The scan ends well, its file finished and equal to the single-process scan's; its stderr."""
    from engine.checkpoint import finished
    from tests.e2e.test_shard_merge import _comparable as comparable

    _, stderr = driver.communicate(timeout=400)
    assert driver.returncode == 0, stderr[-4000:]
    assert finished(out)
    assert comparable(out) == comparable(single)  # comparable() refuses a domain written twice
    return stderr


def test_a_worker_node_removed_mid_scan_changes_no_result(
    world: Any, nodes: Any, single: Path, tmp_path: Path
) -> None:
    """A third node joins; once the scan writes, it is removed with its scan worker: the lost
    batch is measured again elsewhere and nothing is written twice."""
    node = nodes.add_node(num_cpus=1, temp_dir=nodes.head_node.get_temp_dir_path())
    try:
        nodes.wait_for_nodes()
        out = tmp_path / "removed.ndjson"
        driver = _start(world, out, nodes.address)
        nodes.remove_node(node)
        node = None
        stderr = _finishes_equal(driver, out, single)
    finally:
        if node is not None:
            nodes.remove_node(node)
    assert "a scan worker was lost" in stderr, stderr[-2000:]
    assert len(_batches_per_worker(stderr)) == 3


def test_a_probe_actor_killed_mid_scan_changes_no_result(
    world: Any, cluster: str, single: Path, tmp_path: Path
) -> None:
    """Ray restarts it (fresh politeness state); the workers send the requests it had not
    answered again (``calls.Calls``)."""
    import ray

    from scaleout.cluster.driver import NAMESPACE, probe_actor_name

    out = tmp_path / "probe-killed.ndjson"
    driver = _start(world, out, cluster)
    ray.init(address=cluster, namespace=NAMESPACE, log_to_driver=False)
    try:
        ray.kill(ray.get_actor(probe_actor_name(driver.pid, 0), namespace=NAMESPACE), no_restart=False)
    finally:
        ray.shutdown()
    _finishes_equal(driver, out, single)


#: The visible tail's shape (``engine.progress.Tail.text``) in a progress line.
WAITING = re.compile(r"waiting=(\d+) domains/(\d+) hosts <=(\S+)")


def _progress_lines(argv: list[str]) -> tuple[int, list[str]]:
    """The exit code and every line a ``--progress tty`` scan drew on stderr (``\\r`` redraws
    split into lines, the clear-to-end-of-line code removed)."""
    proc = subprocess.Popen(argv, cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    assert proc.stderr is not None
    lines: list[str] = []
    buffer = b""
    try:
        while chunk := proc.stderr.read1(4096):
            buffer += chunk
            *done, buffer = re.split(rb"[\r\n]", buffer)
            lines += [raw.decode("utf-8", "replace").replace("\x1b[K", "").strip() for raw in done]
        lines.append(buffer.decode("utf-8", "replace").replace("\x1b[K", "").strip())
    finally:
        code = proc.wait(timeout=300)
    return code, [line for line in lines if line]


def test_a_cluster_scan_shows_progress_and_the_unresponsive_tail(cluster: str, tmp_path: Path) -> None:
    """The driver draws a single-machine scan's progress line: done/total, rate, ETA, and,
    while a domain waits on a silent host (the Internet-like world's "silent-after-accept",
    a 6 s phase deadline past the 5 s active grace), ``waiting=1 domains/1 hosts <=Ns`` from
    the probe actors' figures and the worker's waiting domains; at the end nothing waits and
    the finished line counts both domains (as tests/e2e/test_visible_tail.py, one machine)."""
    from testbed.control import WorldSpec
    from testbed.harness import running_world
    from tests.e2e.worldscan import world_scan_argv

    domains = tmp_path / "domains.txt"
    domains.write_text("latency-only.scenario.test\nsilent-after-accept.scenario.test\n")
    with running_world(WorldSpec("internet-scenarios")) as world:
        argv = world_scan_argv(world.endpoints, domains, tmp_path / "out.ndjson", "--cluster", cluster)
        argv += ["--smtp-timeout", "6", "--smtp-retries", "1", "--smtp-retry-delay", "3", "--progress", "tty"]
        code, lines = _progress_lines(argv)
    assert code == 0, lines[-10:]
    live = [line for line in lines if re.match(r"\d+/2 \(\d+\.\d%\) [\d.]+/s eta ", line)]
    assert live, lines[-10:]
    waiting = [(int(m[1]), int(m[2])) for line in live if (m := WAITING.search(line))]
    assert (1, 1) in waiting, live[-10:]
    (final,) = [line for line in lines if line.startswith("finished ")]
    assert final.startswith("finished 2/2 (100.0%)") and "waiting=0" in final, final
    assert not WAITING.search(final), final


def test_a_local_cluster_removes_its_ray_files_after_a_clean_scan_and_names_them_after_a_failure(
    world: Any, tmp_path: Path
) -> None:
    """``--cluster local:1`` gives Ray a temporary directory of its own (not the shared
    ``/tmp/ray``, where its sessions once stayed forever): gone after a scan that ends well;
    kept, with Ray's logs, and named on stderr after one that fails (no resolver answers)."""
    # Short: Ray's Unix sockets live under it (at most 107 bytes), pytest's paths are long.
    temp = Path(tempfile.mkdtemp(prefix="mxt-", dir="/tmp"))
    try:
        _local_scans(world, temp, tmp_path)
    finally:
        shutil.rmtree(temp)


def _local_scans(world: Any, temp: Path, tmp_path: Path) -> None:
    from tests.e2e.worldscan import world_scan_argv

    env = {**os.environ, "TMPDIR": str(temp)}
    listing = tmp_path / "two.txt"
    listing.write_text("valid.scenario.test\nno-starttls.scenario.test\n")
    argv = world_scan_argv(world.endpoints, listing, tmp_path / "ok.ndjson", "--cluster", "local:1")
    run = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert list(temp.iterdir()) == [], list(temp.iterdir())
    argv = world_scan_argv(world.endpoints, listing, tmp_path / "failed.ndjson", "--cluster", "local:1")
    argv += ["--resolver", "127.0.0.1:9"]  # nothing answers there: the worker cannot start
    run = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 2, run.stderr[-3000:]
    kept = re.search(r"Ray's logs of this scan are kept in (\S+)", run.stderr)
    assert kept, run.stderr[-3000:]
    (left,) = temp.iterdir()
    assert str(left) == kept[1] and left.name.startswith("mxscan-ray-")
    assert list(left.glob("session_*/logs/*")), sorted(p.name for p in left.rglob("*"))[:20]


def test_a_silent_host_does_not_hold_back_a_fast_probe_of_the_same_probe_call(
    world: Any, cluster: str, tmp_path: Path
) -> None:
    """A scan worker sends its requests to a probe actor in batched calls, answered as each
    probe finishes: a domain whose MX answers (valid) and one whose MX accepts and never greets
    (blackhole), first in the list, form one worker's first batch, measured at once, and
    their probes go to the one probe actor together.  The fast domain is measured in a
    fraction of the silent one's 10 s deadline (its answer never waits for the silent probe's),
    and the driver counts calls carrying several requests."""
    from tests.e2e.worldscan import world_scan_argv

    first = ["valid.scenario.test", "blackhole.scenario.test"]
    others = [d for d in (world.state_dir / "domains.txt").read_text().split() if d not in first]
    listing = tmp_path / "domains.txt"
    listing.write_text("\n".join(first + others[:14]) + "\n")  # 16 names: batches of 2 for 2 workers
    out = tmp_path / "out.ndjson"
    argv = world_scan_argv(world.endpoints, listing, out, "--cluster", cluster)
    argv += ["--smtp-timeout", "10", "--smtp-connect-timeout", "10"]
    run = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    records = {r["domain"]: r for r in map(json.loads, out.read_text().splitlines()) if "duration_ms" in r}
    fast, silent = (records[domain] for domain in first)
    assert silent["duration_ms"] >= 9_000, silent["duration_ms"]
    assert fast["duration_ms"] < 3_000, (fast["duration_ms"], silent["duration_ms"])
    calls = re.search(r"(\d+) probe calls of ([\d.]+) requests on average", run.stderr)
    assert calls and float(calls[2]) > 1.0, run.stderr[-2000:]
