"""The README's "last measured" table: recorded by the benchmarks, generated, never typed by hand."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from benchmarks import _common, readme

pytestmark = pytest.mark.unit

MACHINE = {
    "cpus": 2,
    "cpu_model": "AMD EPYC",
    "memory_mb": 24105,
    "python": "3.11.7",
    "platform": "Linux-6.18-x86_64",
}
INGEST = {
    "benchmark": "ingest",
    "variant": "replicas-2",
    "infrastructure": "local stack",
    "events": 200_000,
    "replicas": 2,
    "ingest_s": 37.1,
    "events_per_s": 5394,
    "profiles_peak_rss_mb": 108.2,
    "kafka_baseline": {"consume_produce_msgs_per_s": 33782},
    "ratio_to_baseline_consume_produce": 0.16,
    "targets": {"ratio": 0.4, "peak_rss_mb": 400},
    "measured_at": "2026-12-06T20:01:02+00:00",
    "machine": MACHINE,
}
NOTIFY = {  # before `delivered_before` existed: what is absent is skipped
    "benchmark": "notify",
    "notifications": 50_000,
    "replicas": 1,
    "deliveries_per_second": 1203.4,
    "seconds": 41.55,
    "duplicates": 0,
    "missing": 0,
    "service_peak_rss_mb": 76.0,
    "target": ">= 1000 deliveries/s, 0 duplicates",
    "target_met": True,
    "measured_at": "2026-12-07T08:00:00+00:00",
    "machine": {**MACHINE, "cpus": 8, "cpu_model": "Intel Xeon"},
}
CONTINUOUS = {
    "benchmark": "matching_continuous",
    "mentors_per_program": 10_000,
    "programs": 2,
    "seconds_per_step": 20.0,
    "max_rate_per_s": 450,
    "max_rate_per_s_2_replicas": 830,
    "peak_rss_mb": {"1_replicas": {"matching-1": 160.2}, "2_replicas": {"profiles": 90.0}},
    "steps": [
        {"replicas": 1, "rate_per_s": 200.0, "latency_ms_p99": 120.0},
        {"replicas": 1, "rate_per_s": 400.0, "latency_ms_p99": 140.5},
        {"replicas": 2, "rate_per_s": 800.0, "latency_ms_p99": 149.0},
    ],
    "runs_at_200": [
        {"latency_ms_p50": 40.5, "latency_ms_p99": 120.0},
        {"latency_ms_p50": 41.0, "latency_ms_p99": 131.2},
        {"latency_ms_p50": 39.9, "latency_ms_p99": 1170.0},
    ],
    "replicas_ratio": 1.85,
    "targets": {"max_rate_per_s": 400, "latency_ms_p99": 150, "replicas_ratio": 1.8},
    "measured_at": "2026-12-06T21:00:00+00:00",
    "machine": MACHINE,
}
QUALITY = {
    "benchmark": "match_quality",
    "seed": 7,
    "sizes": {"mentors": 600, "mentees": 2000, "months_of_arrivals": 10},
    "matchers": {
        "random": {"win_win_rate": 0.265, "violations": {"total": 0}},
        "fixed": {"win_win_rate": 0.542, "violations": {"total": 0}},
        "new": {"win_win_rate": 0.654, "violations": {"total": 0}},
    },
    "win_win_over_fixed": 1.21,
    "win_win_over_random": 2.47,
    "learning": {"outcomes": 3657, "spearman": 0.79},
    "targets": {"win_win_over_fixed_at_least_1.15": True, "no_violations": False},
    "measured_at": "2026-12-06T20:30:00+00:00",
    "machine": MACHINE,
}
MATCHING = {  # nested by section; violations counted per rule
    "benchmark": "matching",
    "sections": {
        "cohort": {
            "scale": {
                "instance": {"mentees": 100_000, "mentors": 20_000},
                "flow": {"seconds": {"total": 11.3}, "violations": {"capacity": 0, "self": 2}},
            },
            "quality": {"optimum": {"flow_ratio": 0.997, "greedy_ratio": 0.911}},
        }
    },
    "measured_at": "2026-12-06T20:07:04+00:00",
    "machine": MACHINE,
}
UNKNOWN = {
    "benchmark": "replay",
    "events": 12_000,
    "events_per_s": 2500.5,
    "quick": False,
    "measured_at": "2026-12-06T20:00:00+00:00",
    "machine": MACHINE,
}


def write(results: Path, name: str, figures: object) -> None:
    (results / f"{name}.json").write_text(json.dumps(figures))


def table(results: Path) -> list[str]:
    return readme.render(readme.load(results)).splitlines()


def test_each_result_is_one_row_with_its_figures_targets_verdict_and_date(tmp_path: Path) -> None:
    for name, figures in [
        ("ingest.replicas-2", INGEST),
        ("notify", NOTIFY),
        ("matching_continuous", CONTINUOUS),
        ("match_quality", QUALITY),
        ("matching", MATCHING),
        ("replay", UNKNOWN),
    ]:
        write(tmp_path, name, figures)
    lines = table(tmp_path)
    rows = [line for line in lines if line.startswith("| `")]
    assert rows == [
        "| `ingest` `replicas-2` 200,000 events, 2 profiles processes"
        " | 5,394 events/s (37.1 s), 0.16 of `kafka_baseline` consume-and-produce (33,782/s),"
        " peak 108.2 MB per process | ≥ 0.4 of the baseline, < 400 MB | not stated"
        " | 2026-12-06, machine A |",
        "| `matching` cohort 100,000 \u00d7 20,000 | 11.3 s; violations: self 2"
        " | — | — | 2026-12-06, machine A |",
        "| `match_quality` seed 7, 600 mentors \u00d7 2,000 mentees over 10 months"
        " | win/win: new 0.654, fixed 0.542, random 0.265; **1.21 \u00d7 fixed, 2.47 \u00d7 random**;"
        " violations: new 0, fixed 0, random 0; learned weights after 3,657 outcomes: **Spearman 0.79**"
        " | win/win over fixed at least 1.15, no violations | no: no violations"
        " | 2026-12-06, machine A |",
        "| `matching_continuous` 10,000 mentors in each of 2 programs, 20.0 s of arrivals"
        " per rate | one matching process: **450 mentees/s** at most within the p99 target,"
        " at 200/s, 3 runs: p50 40.5 / 41.0 / 39.9 ms, p99 120.0 / 131.2 / 1,170.0 ms,"
        " two replicas: 830 mentees/s, **1.85 \u00d7 one**, p99 by rate: one process"
        " 120.0 ms at 200.0/s, 140.5 ms at 400.0/s; two 149.0 ms at 800.0/s,"
        " peak 160.2 MB per process"
        " | ≥ 400 mentees/s, p99 ≤ 150 ms, two replicas ≥ 1.8 \u00d7 one | not stated"
        " | 2026-12-06, machine A |",
        "| `notify` 50,000 notifications, 1 replica"
        " | 1,203.4 deliveries/s (41.55 s), 0 duplicates, 0 missing, peak 76.0 MB per replica"
        " | >= 1000 deliveries/s, 0 duplicates | yes | 2026-12-07, machine B |",
        "| `replay` | events 12,000, events_per_s 2,500.5 | — | — | 2026-12-06, machine A |",
    ]
    assert lines[1] == "### Last measured (2026-12-06 to 2026-12-07)"
    machines = [line for line in lines if line.startswith("Machine")]
    assert machines == [
        "Machine A: AMD EPYC, 2 CPUs, 24,105 MB of memory, Linux-6.18-x86_64, Python 3.11.7;"
        " Kafka and PostgreSQL: local stack.",
        "Machine B: Intel Xeon, 8 CPUs, 24,105 MB of memory, Linux-6.18-x86_64, Python 3.11.7.",
    ]
    assert lines[-1] == "Not recorded yet: `kafka_baseline`, `http_ingest`."


def test_a_malformed_result_is_an_error_naming_its_file(tmp_path: Path) -> None:
    write(tmp_path, "ingest", INGEST)
    (tmp_path / "notify.json").write_text('{"benchmark": "notify", ')
    with pytest.raises(readme.ResultError, match=r"notify\.json"):
        readme.load(tmp_path)
    (tmp_path / "notify.json").write_text('["not", "a", "result"]')
    with pytest.raises(readme.ResultError, match=r"notify\.json"):
        readme.load(tmp_path)


def test_check_fails_on_a_readme_whose_table_differs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "results"
    results.mkdir()
    write(results, "notify", NOTIFY)
    stale = (
        f"# x\n\n{readme.START}\n| `notify` | 9,999 deliveries/s |\n{readme.END}\n\nWhat limits\n"
    )
    path = tmp_path / "README.md"
    path.write_text(stale)
    options = ["--readme", str(path), "--results", str(results)]

    assert readme.main([*options, "--check"]) == 1
    assert "regenerate it with python -m benchmarks.readme" in capsys.readouterr().err
    assert path.read_text() == stale  # --check changes nothing

    assert readme.main(options) == 0
    regenerated = path.read_text()
    assert "1,203.4 deliveries/s" in regenerated and "9,999" not in regenerated
    assert regenerated.startswith(f"# x\n\n{readme.START}\n") and regenerated.endswith(
        f"{readme.END}\n\nWhat limits\n"
    )
    assert readme.main([*options, "--check"]) == 0


def test_the_readme_is_what_the_committed_results_generate() -> None:
    """The guard: a figure typed into the table, or a result recorded without regenerating,
    fails here. Fix: python -m benchmarks.readme (or make bench-readme)."""
    assert readme.main(["--check"]) == 0


def test_record_writes_the_result_with_its_date_and_machine_under_its_variant(
    tmp_path: Path,
) -> None:
    path = _common.record({"benchmark": "ingest", "variant": "replicas-2", "x": 1}, tmp_path)
    assert path == tmp_path / "ingest.replicas-2.json"
    recorded = json.loads(path.read_text())
    assert recorded["x"] == 1 and recorded["measured_at"].startswith("20")
    assert set(recorded["machine"]) >= {"cpus", "cpu_model", "memory_mb", "python", "platform"}
    assert _common.record({"benchmark": "ingest"}, tmp_path) == tmp_path / "ingest.json"
    with pytest.raises(ValueError, match="variant"):
        _common.record({"benchmark": "ingest", "variant": "../x"}, tmp_path)


def test_record_refuses_quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_common, "_recording", False)  # restored after: no other test records
    monkeypatch.setattr(sys, "argv", ["bench", "--record", "--quick"])
    with pytest.raises(SystemExit):
        _common.arguments("bench")
    monkeypatch.setattr(sys, "argv", ["bench", "--record"])
    assert _common.arguments("bench").record
