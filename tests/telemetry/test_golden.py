"""Golden signals from cumulative counts: rates, success, percentiles, restarts."""

from __future__ import annotations

from sidemesh.model.refs import WorkloadRef
from sidemesh.telemetry.envoy_stats import Traffic, destination_traffic
from sidemesh.telemetry.golden import Edge, GoldenSignals, quantile

EDGE = Edge(WorkloadRef("a-1", "default"), "a.default", "b.default")
BOUNDS = (1.0, 5.0, 10.0, 100.0, 1000.0)


def _traffic(requests: int, errors: int, under: tuple[int, ...]) -> Traffic:
    return Traffic(
        requests, {"2xx": requests - errors, "5xx": errors}, tuple(zip(BOUNDS, under, strict=True))
    )


def test_a_window_takes_what_grew_between_its_oldest_and_newest_sample() -> None:
    signals = GoldenSignals()
    signals.record(0.0, {EDGE: _traffic(100, 0, (50, 100, 100, 100, 100))})
    signals.record(10.0, {EDGE: _traffic(300, 20, (50, 150, 200, 290, 300))})
    found = signals.edges(10.0)[EDGE]
    assert found.requests == 200 and found.rps == 20.0
    assert found.success_rate == 0.9
    # 200 new: 50 in (1,5], 50 in (5,10], 90 in (10,100], 10 in (100,1000]
    assert (found.p50_ms, found.p95_ms, found.p99_ms) == (10.0, 100.0, 820.0)


def test_a_restarted_envoys_counts_start_again_from_zero() -> None:
    signals = GoldenSignals()
    signals.record(0.0, {EDGE: _traffic(500, 0, (500,) * 5)})
    signals.record(5.0, {EDGE: _traffic(40, 0, (40,) * 5)})
    assert signals.edges(10.0)[EDGE].requests == 40


def test_samples_older_than_the_longest_window_are_let_go() -> None:
    signals = GoldenSignals(keep_s=60)
    for t in range(0, 600, 5):
        signals.record(float(t), {EDGE: _traffic(t, 0, (t,) * 5)})
    assert len(signals._samples) <= 13


def test_quantiles_interpolate_within_a_bucket() -> None:
    assert quantile(0.5, [(10.0, 0), (20.0, 10)]) == 15.0
    assert quantile(0.5, []) is None
    assert quantile(0.5, [(10.0, 0)]) is None


def test_envoys_json_stats_become_traffic_per_destination() -> None:
    body = {
        "stats": [
            {"name": "cluster.outbound|9080||b.default.upstream_rq_total", "value": 7},
            {"name": "cluster.outbound|9080||b.default.upstream_rq_2xx", "value": 6},
            {"name": "cluster.outbound|9080||b.default.upstream_rq_5xx", "value": 1},
            {"name": "cluster.outbound|80||api.example.com.upstream_rq_total", "value": 2},
            {
                "histograms": [
                    {
                        "name": "cluster.outbound|9080||b.default.upstream_rq_time",
                        "buckets": [
                            {"upper_bound": 1, "cumulative": 3},
                            {"upper_bound": 5, "cumulative": 7},
                        ],
                    }
                ]
            },
        ]
    }
    found = destination_traffic(body)
    assert found["b.default"].requests == 7 and found["b.default"].errors == 1
    assert found["b.default"].latency_buckets == ((1.0, 3), (5.0, 7))
    assert found["api.example.com"].requests == 2


def test_a_tcp_destinations_connections_and_bytes_are_counted_per_window() -> None:
    """A TCP service has no requests: its connections and bytes each way are what the
    caller's Envoy counts of it."""

    def sample(connections: int, sent: int, received: int) -> dict[Edge, Traffic]:
        body = {
            "stats": [
                {
                    "name": "cluster.outbound|5432||db.default.upstream_cx_total",
                    "value": connections,
                },
                {
                    "name": "cluster.outbound|5432||db.default.upstream_cx_tx_bytes_total",
                    "value": sent,
                },
                {
                    "name": "cluster.outbound|5432||db.default.upstream_cx_rx_bytes_total",
                    "value": received,
                },
            ]
        }
        traffic = destination_traffic(body)["db.default"]
        return {Edge(WorkloadRef("a-1", "default"), "a.default", "db.default"): traffic}

    signals = GoldenSignals()
    signals.record(0.0, sample(2, 100, 1000))
    signals.record(10.0, sample(5, 400, 9000))
    (found,) = signals.edges(10.0).values()
    assert (found.requests, found.connections, found.bytes_sent, found.bytes_received) == (
        0,
        3,
        300,
        8000,
    )
    assert found.to_json()["bytesReceived"] == 8000
