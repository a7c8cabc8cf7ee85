"""The API benchmark's arithmetic: reading wrk's summary and adding runs up (the benchmarks themselves are
run by hand: they print figures, they assert no timings)."""

from __future__ import annotations

import pytest

from bench.api import Load, combine, parse_wrk, percentiles

WRK_OUTPUT = """Running 1s test @ http://127.0.0.1:45593/api/v1/nope
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     3.64ms    5.90ms  57.73ms   96.10%
    Req/Sec     1.51k   496.70     2.25k    70.00%
  Latency Distribution
     50%  812.00us
     75%    3.61ms
     90%    5.03ms
     99%    1.20s
  1500 requests in 1.00m, 471.83KB read
  Socket errors: connect 0, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 7
Requests/sec:     25.00
Transfer/sec:    471.41KB
"""


def test_parse_wrk_reads_requests_time_percentiles_and_errors():
    load = parse_wrk(WRK_OUTPUT)
    assert (load.requests, load.seconds, load.errors) == (1500, 60.0, 12)
    assert load.p50_ms == pytest.approx(0.812) and load.p99_ms == pytest.approx(1200.0)
    assert load.rps == pytest.approx(25.0)


def test_parse_wrk_refuses_output_it_does_not_know():
    with pytest.raises(RuntimeError, match="unexpected wrk output"):
        parse_wrk("unable to connect to 127.0.0.1:1 Connection refused")


def test_percentiles_nearest_rank():
    assert percentiles([i / 1000 for i in range(1, 101)]) == pytest.approx((51.0, 100.0))


def test_combine_side_by_side_and_in_turn():
    a = Load(100, 2.0, 1.0, 5.0, errors=1)
    b = Load(300, 2.0, 2.0, 4.0, errors=0)
    side = combine([a, b], side_by_side=True)
    figures = (side.requests, side.seconds, side.rps, side.p50_ms, side.p99_ms, side.errors)
    assert figures == (400, 2.0, 200.0, 2.0, 5.0, 1)
    assert side.hits is None
    in_turn = combine([a, b], side_by_side=False)
    assert (in_turn.seconds, in_turn.rps) == (4.0, 100.0)


def test_combine_keeps_exact_percentiles_when_latencies_are_known():
    a = Load(2, 1.0, 0, 0, errors=0, hits=2, latencies=[0.001, 0.003])
    b = Load(2, 1.0, 0, 0, errors=0, hits=1, latencies=[0.002, 0.004])
    both = combine([a, b], side_by_side=False)
    assert both.hits == 3 and both.latencies == [0.001, 0.003, 0.002, 0.004]
    assert (both.p50_ms, both.p99_ms) == pytest.approx((3.0, 4.0))
