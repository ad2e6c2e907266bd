"""benchmarks/api.py's pure parts: the figures of a run, when a rate holds, the target, the
sweep's rates and verdict, and the lines and JSON it prints."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.api import parse_args, record_budget
from benchmarks.api_load import (
    Call,
    DecideLoad,
    call_figures,
    due_times,
    figures,
    holds,
    last_held,
    server_seconds,
    sweep_rates,
    target_met,
)
from benchmarks.api_profile import package_of
from benchmarks.api_report import (
    Comparison,
    Cpu,
    Phase,
    Step,
    json_line,
    merged,
    summary,
    target_lines,
)
from benchmarks.api_stack import with_api_key
from benchmarks.harness import latencies_ms
from benchmarks.kafka_io import Seen
from stream_engine.api.security import key_hash


def phase(rate: float, p99: float, count: int = 100, api_s: float = 0.5) -> Phase:
    latencies = [p99 / 2] * (count - 2) + [p99] * 2
    return Phase(rate, figures(latencies, [200] * count), 10.0, Cpu(api_s=api_s))


def test_figures_give_the_nearest_rank_percentiles_and_the_maximum():
    found = figures([float(v) for v in range(1, 101)])

    assert (found.count, found.p50_ms, found.p99_ms, found.max_ms) == (100, 50, 99, 100)


def test_figures_of_no_values_are_not_numbers():
    found = figures([])

    assert math.isnan(found.p99_ms)
    assert math.isnan(found.max_ms)
    assert math.isnan(found.share_202)


def test_the_share_of_202s_counts_every_call_and_errors_are_neither_200_nor_202():
    calls = [Call(200, 5.0)] * 6 + [Call(202, 2000.0)] * 3 + [Call(0, 1.0)]

    found = call_figures(calls)

    assert found.share_202 == 0.3
    assert found.errors == 1
    assert found.max_ms == 2000.0


def test_a_rate_holds_only_with_every_call_a_200_and_the_p99_under_a_second():
    assert holds(figures([10.0] * 99 + [999.0], [200] * 100), 100)
    assert not holds(figures([10.0] * 98 + [1000.0] * 2, [200] * 100), 100)
    assert not holds(figures([10.0] * 100, [200] * 99 + [202]), 100)
    assert not holds(figures([10.0] * 100, [200] * 99 + [0]), 100)
    assert not holds(figures([10.0] * 99, [200] * 99), 100), "a call missing"


def test_the_target_allows_ten_milliseconds_over_the_pipelines_own_p99():
    assert target_met(60.0, 50.0)
    assert not target_met(60.1, 50.0)
    assert not target_met(math.nan, 50.0)


def test_the_sweep_doubles_its_rate_up_to_the_ceiling():
    assert sweep_rates(400, 3200) == [400, 800, 1600, 3200]
    assert sweep_rates(400, 399) == []


def test_the_last_rate_held_is_the_one_before_the_first_that_did_not():
    assert last_held([(200, True), (400, True), (800, False), (1600, True)]) == 400
    assert last_held([(200, False)]) is None
    assert last_held([]) is None


def test_requests_are_due_at_even_spacing_from_the_start():
    assert due_times(10.0, 4.0, 3) == [10.0, 10.25, 10.5]


def test_latencies_are_of_records_both_published_and_seen():
    seen = {"a": Seen(10.050, "decisions"), "b": Seen(10.2, "rejected")}
    published = {"a": 10.0, "c": 10.0}

    assert [round(v, 3) for v in latencies_ms(["a", "b", "c"], seen, published)] == [50.0]


def test_target_lines_say_the_figures_and_whether_each_rate_meets_the_target():
    rows = [
        Comparison(phase(50, 40.0), phase(50, 45.0)),
        Comparison(phase(200, 40.0), phase(200, 80.0)),
    ]
    steps = [Step(phase(400, 100.0), True), Step(phase(800, 1200.0), False)]

    assert target_lines(rows, steps) == [
        "target at 50/s: decide p99 45.0 ms <= pipeline p99 40.0 ms + 10 ms: met",
        "target at 200/s: decide p99 80.0 ms <= pipeline p99 40.0 ms + 10 ms: not met",
        "most decide requests/s one API process sustained with p99 < 1 s: 400 requests/s",
        "the API process used 5.00 CPU s per 1,000 decide calls: a core of its own would "
        "serve about 200 calls/s",
    ]


def test_the_json_line_holds_each_rates_figures_the_verdict_and_the_api_cpu_per_1000_calls():
    rows = [Comparison(phase(50, 40.0), phase(50, 45.0, count=100, api_s=0.2))]
    steps = [Step(phase(400, 100.0, count=300, api_s=0.6), True)]

    line = json.loads(json_line(summary(rows, steps, "kafka", "one", load_1m_start=1.5)))

    assert line["rates"]["50"]["decide_p99_ms"] == 45.0
    assert line["rates"]["50"]["pipeline_p99_ms"] == 40.0
    assert line["rates"]["50"]["target_met"] is True
    assert line["target_met"] is True
    assert line["max_decide_per_s"] == 400
    assert line["api_cpu_s_per_1k_decide"] == 2.0
    assert line["load_1m_start"] == 1.5


def test_the_record_budget_covers_both_phases_of_each_rate_and_every_sweep_step():
    args = parse_args(["--rates", "50,200", "--duration-s", "10", "--rounds", "2",
                       "--sweep-from", "400", "--sweep-max", "800", "--step-s", "5"])  # fmt: skip

    assert args.sweep == [200, 400, 800], "the highest rate compared first"
    assert record_budget(args) == 2 * 500 + 2 * 2000 + 1000 + 2000 + 4000


def test_phases_merged_pool_their_latencies_and_add_up_windows_and_cpu():
    first = Phase.of(50, [10.0, 20.0], [200, 200], 1.0, Cpu(1.0, 2.0, 3.0, 4.0))
    second = Phase.of(50, [30.0], [202], 2.0, Cpu(0.5, 0.5, 0.5, 0.5))

    both = merged([first, second])

    assert both.figures.count == 3
    assert both.figures.max_ms == 30.0
    assert both.figures.share_202 == 1 / 3
    assert both.window_s == 3.0
    assert both.cpu == Cpu(1.5, 2.5, 3.5, 4.5)


def test_the_config_copy_serves_the_api_to_the_benchmarks_key_alone_and_keeps_the_rest(
    tmp_path,
):
    config = tmp_path / "pipeline.yaml"
    listed = {"id": "web", "hash": "sha256:" + "0" * 64, "rate_per_s": 500}
    config.write_text(
        yaml.safe_dump({"pipeline": "p", "api": {"timeout_ms": 500, "keys": [listed]}})
    )

    with_api_key(config, "the-key")

    api = yaml.safe_load(config.read_text())["api"]
    assert api["timeout_ms"] == 500
    assert api["keys"] == [
        {"id": "bench", "hash": key_hash("the-key"), "scopes": ["decide", "submit", "read"]}
    ]


def test_decide_requests_carry_the_api_key_and_a_json_body():
    assert DecideLoad("http://h", key="k").headers == {
        "Content-Type": "application/json",
        "X-API-Key": "k",
    }


def test_the_time_inside_the_api_is_read_from_its_decide_histogram_only():
    text = "\n".join(
        [
            "# HELP stream_engine_api_request_duration_seconds Time from request to response",
            'stream_engine_api_request_duration_seconds_bucket{le="0.1",pipeline="p",'
            'route="/v1/decide"} 3.0',
            'stream_engine_api_request_duration_seconds_sum{pipeline="p",route="/v1/decide"} 0.25',
            'stream_engine_api_request_duration_seconds_count{pipeline="p",route="/v1/decide"} 5.0',
            'stream_engine_api_request_duration_seconds_sum{pipeline="p",route="/ready"} 9.0',
            'stream_engine_api_request_duration_seconds_count{pipeline="p",route="/ready"} 9.0',
        ]
    )

    assert server_seconds(text) == (0.25, 5.0)


def test_a_calls_service_time_leaves_out_its_wait_to_be_sent():
    assert Call(200, latency_ms=30.0, waited_ms=12.0).service_ms == 18.0


def test_figures_give_the_mean_too():
    assert figures([10.0, 20.0, 60.0]).mean_ms == 30.0


def test_a_profiled_function_is_grouped_by_its_package():
    site = "/work/.venv/lib/python3.11/site-packages"
    assert package_of(f"{site}/aiokafka/protocol/types.py") == "aiokafka.protocol"
    assert package_of(f"{site}/aiohttp/web_protocol.py") == "aiohttp"
    assert package_of("/usr/lib/python3.11/asyncio/base_events.py") == "asyncio"
    assert package_of("/repo/stream_engine/api/outputs.py") == "stream_engine.api.outputs"
    assert package_of("<frozen importlib._bootstrap>") == "start-up (imports)"
    assert package_of("~") == "builtins"
