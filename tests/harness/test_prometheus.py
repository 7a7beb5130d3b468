"""harness.prometheus: the /metrics parser, label matching, and quantiles from the difference of
two scrapes of a cumulative Prometheus histogram."""

from __future__ import annotations

import math

import pytest

from harness.prometheus import Histogram, diff, histogram, metric, metrics_url, parse, parse_histogram, series

NAME = "sensor_pipeline_e2e_latency_seconds"


def exposition(buckets: dict[str, float], worker: str = "0") -> str:
    """Prometheus text for the e2e histogram as one pool worker would expose it."""
    lines = [f"# HELP {NAME} e2e", f"# TYPE {NAME} histogram"]
    lines += [f'{NAME}_bucket{{le="{le}",worker="{worker}"}} {n}' for le, n in buckets.items()]
    lines += [
        f'{NAME}_count{{worker="{worker}"}} {buckets["+Inf"]}',
        f'{NAME}_sum{{worker="{worker}"}} 1.5',
    ]
    return "\n".join(lines) + "\n"


def test_parse_sums_the_label_sets_of_all_workers() -> None:
    text = (
        exposition({"0.01": 2, "0.1": 5, "+Inf": 6}, "0")
        + exposition({"0.01": 1, "0.1": 1, "+Inf": 1}, "1").split("\n", 2)[2]
    )

    h = parse_histogram(text, NAME)

    assert h is not None
    assert h.buckets == {0.01: 3, 0.1: 6, math.inf: 7}
    assert h.count == 7


def test_missing_metric_is_none_not_zero() -> None:
    assert parse_histogram("# TYPE other counter\nother_total 3\n", NAME) is None


def test_diff_keeps_only_the_window_and_interpolates_inside_the_bucket() -> None:
    before = Histogram({0.005: 100, 0.01: 100, 0.025: 100, math.inf: 100}, 100, 0.3)
    after = Histogram({0.005: 100, 0.01: 150, 0.025: 200, math.inf: 200}, 200, 2.0)

    window = after - before

    assert window.buckets == {0.005: 0, 0.01: 50, 0.025: 100, math.inf: 100}
    assert window.count == 100
    assert window.quantile(0.5) == pytest.approx(0.01)  # rank 50 ends the (5 ms, 10 ms] bucket
    assert window.quantile(0.25) == pytest.approx(0.0075)  # half way through it
    assert window.quantile(0.99) == pytest.approx(0.01 + 0.015 * 49 / 50)


def test_quantile_in_the_inf_bucket_is_unbounded() -> None:
    h = Histogram({0.1: 98, 5.0: 98, math.inf: 100}, 100, 50.0)

    assert h.quantile(0.5) == pytest.approx(0.1 * 50 / 98)
    assert h.quantile(0.99) == math.inf


def test_empty_window_has_no_quantile() -> None:
    assert math.isnan(Histogram({0.1: 0, math.inf: 0}, 0, 0).quantile(0.99))


def test_quantile_rejects_out_of_range() -> None:
    with pytest.raises(ValueError):
        Histogram({math.inf: 1}, 1, 0).quantile(1.5)


COUNTERS = """# HELP sensor_consumer_readings_total readings
# TYPE sensor_consumer_readings_total counter
sensor_consumer_readings_total{result="stored",worker="0"} 5.0
sensor_consumer_readings_total{result="stored",worker="1"} 2.0
sensor_consumer_readings_total{result="dlq",worker="0"} 1.0
# HELP sensor_consumer_workers_alive alive
# TYPE sensor_consumer_workers_alive gauge
sensor_consumer_workers_alive 2.0
"""


def test_parse_keys_samples_by_name_and_sorted_labels() -> None:
    samples = parse(COUNTERS)

    assert samples[("sensor_consumer_readings_total", (("result", "dlq"), ("worker", "0")))] == 1.0
    assert samples[("sensor_consumer_workers_alive", ())] == 2.0


def test_metric_sums_the_series_whose_labels_include_the_given_ones() -> None:
    samples = parse(COUNTERS)

    assert metric(samples, "sensor_consumer_readings_total") == 8.0
    assert metric(samples, "sensor_consumer_readings_total", result="stored") == 7.0
    assert metric(samples, "sensor_consumer_readings_total", result="stored", worker="1") == 2.0
    assert metric(samples, "sensor_consumer_readings_total", result="duplicate") == 0
    assert metric(samples, "absent") == 0


def test_series_gives_labels_and_values() -> None:
    got = sorted((labels["worker"], v) for labels, v in series(parse(COUNTERS), "sensor_consumer_readings_total"))

    assert got == [("0", 1.0), ("0", 5.0), ("1", 2.0)]


def test_histogram_of_diffed_samples_is_the_diff_of_histograms() -> None:
    before = parse(exposition({"0.01": 2, "0.1": 5, "+Inf": 6}))
    after = parse(exposition({"0.01": 4, "0.1": 9, "+Inf": 12}))

    window = histogram(diff(after, before), NAME)

    whole_after, whole_before = histogram(after, NAME), histogram(before, NAME)
    assert whole_after is not None and whole_before is not None
    assert window == whole_after - whole_before
    assert window is not None and window.buckets == {0.01: 2, 0.1: 4, math.inf: 6}


def test_a_port_means_the_local_metrics_endpoint() -> None:
    assert metrics_url(9108) == "http://127.0.0.1:9108/metrics"
    assert metrics_url("http://h:1/metrics") == "http://h:1/metrics"
