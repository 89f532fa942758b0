"""`hifigan bench`: its JSON fields, its statistics, and its errors."""

import json

import pytest

from hifigan.bench import BenchResult, percentile
from hifigan.cli import main

FIELDS = {"latency_mean_ms", "latency_p50_ms", "latency_p90_ms", "latency_p99_ms", "samples_per_second",
          "real_time_factor", "peak_memory_mb", "memory_growth_mb", "backend", "precision", "requested_precision",
          "threads", "batch", "frames", "warmup", "repeats", "device", "model", "audio_seconds_per_call"}


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_percentile_is_the_empirical_nearest_rank():
    values = [5.0, 1.0, 4.0, 2.0, 3.0]
    assert [percentile(values, q) for q in (0, 20, 50, 90, 99, 100)] == [1.0, 1.0, 3.0, 5.0, 5.0, 5.0]
    assert percentile(list(range(1, 101)), 90) == 90


@pytest.mark.parametrize("backend", ["torch", "eager"])
def test_bench_json_has_every_field_and_consistent_figures(capsys, backend):
    code, out, _ = run(capsys, "bench", "--model", "v3", "--frames", 12, "--batch", 2, "--repeats", 3,
                       "--warmup", 1, "--threads", 2, "--backend", backend, "--json")
    assert code == 0
    result = json.loads(out)
    assert FIELDS <= set(result) and set(result) == {f.name for f in BenchResult.__dataclass_fields__.values()}
    assert (result["backend"], result["precision"], result["threads"], result["batch"]) == (backend, "fp32", 2, 2)
    samples = 2 * 12 * 256
    assert result["audio_seconds_per_call"] == pytest.approx(samples / 22050)
    assert result["samples_per_second"] == pytest.approx(samples / (result["latency_mean_ms"] / 1e3))
    assert result["real_time_factor"] == pytest.approx(result["samples_per_second"] / 22050)
    assert 0 < result["latency_p50_ms"] <= result["latency_p90_ms"] <= result["latency_p99_ms"]
    assert result["peak_memory_mb"] > 10


def test_bench_human_output_and_bf16_fallback(capsys, monkeypatch):
    monkeypatch.setattr("hifigan.engines.cpu_bf16_supported", lambda: False)
    code, out, err = run(capsys, "bench", "--model", "v3", "--frames", 4, "--repeats", 1, "--precision", "bf16")
    assert code == 0 and "real-time factor" in out and "fp32 (asked bf16)" in out
    assert err.strip().startswith("hifigan: warning: precision 'bf16' requested") and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("argv,message", [
    (["--frames", "0"], "frames must be a positive integer"),
    (["--model", "v9"], "v9"),
    (["--threads", "0"], "threads must be a positive integer"),
])
def test_bench_errors_are_one_line(capsys, argv, message):
    code, _, err = run(capsys, "bench", "--repeats", "1", *argv)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
