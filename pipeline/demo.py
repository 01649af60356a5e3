"""`peakend demo`: the whole path on this machine, then what an analyst and on-call see first.

1. starts the local stack (Kafka, ClickHouse) through scripts/stack.sh;
2. generates synthetic journeys across channels and touchpoints, with an NPS drop injected on
   the phone channel and a few invalid records, and produces them to a fresh input topic;
3. runs `peakend worker` until everything is in ClickHouse, then stops it;
4. prints journeys closed, the worst peaks and ends by touchpoint, NPS and CES by channel with
   intervals, the alerts that fired, dead letters, and where to query next (read-only user);
5. writes the same views as a static HTML report with charts (`out/demo-report.html`,
   pipeline/report_html.py), for pictures without Grafana.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.settings import Settings
from pipeline.storage.warehouse import ServerWarehouse

ROOT = Path(__file__).resolve().parents[1]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--events", type=int, default=60000, help="valid events (default 60000)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait for the worker")


def _stack_env() -> dict[str, str]:
    subprocess.run(["bash", str(ROOT / "scripts/stack.sh"), "start", "kafka", "clickhouse"],
                   check=True)
    out = subprocess.run(["bash", str(ROOT / "scripts/stack.sh"), "env"], check=True,
                         capture_output=True, text=True).stdout
    env = {}
    for line in out.splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        env[name] = value
    return env


def _table(title: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.2f}"
        return "" if v is None else str(v)

    text = [[cell(v) for v in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in text]) for i, h in enumerate(header)]
    print(f"\n{title}")
    print("  " + "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    for r in text or [["(none)"] + [""] * (len(header) - 1)]:
        print("  " + "  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)))


def run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    stack = _stack_env()
    tag = time.strftime("%Y%m%d%H%M%S")
    database = "peakend_demo"
    admin = ServerWarehouse(stack["PEAKEND_CLICKHOUSE_ADMIN_URL"].rsplit("/", 1)[0] + "/default")
    admin.execute(f"DROP DATABASE IF EXISTS {database}")
    admin.execute(f"CREATE DATABASE {database}")
    admin.close()
    base_writer = stack["PEAKEND_CLICKHOUSE_URL"].rsplit("/", 1)[0]
    base_reader = stack["PEAKEND_CLICKHOUSE_READER_URL"].rsplit("/", 1)[0]
    env = {
        **os.environ,
        "PEAKEND_KAFKA_BOOTSTRAP": stack["PEAKEND_KAFKA_BOOTSTRAP"],
        "PEAKEND_CLICKHOUSE_URL": f"{base_writer}/{database}",
        "PEAKEND_CLICKHOUSE_DATABASE": database,
        "PEAKEND_APP_ID": f"peakend-demo-{tag}",
        "PEAKEND_TOPIC_TOUCHPOINTS": f"demo.{tag}.touchpoints",
        "PEAKEND_TOPIC_DEAD_LETTERS": f"demo.{tag}.dead-letters",
        "PEAKEND_TOPIC_JOURNEYS": f"demo.{tag}.journeys",
        "PEAKEND_TOPIC_METRICS": f"demo.{tag}.metrics",
        "PEAKEND_TOPIC_ALERTS": f"demo.{tag}.alerts",
        "PEAKEND_PARTITIONS": "4",
        "PEAKEND_DATA_DIR": str(ROOT / ".stack" / "demo" / tag),
        # 36 h of synthetic history with ~75 phone answers an hour: compare 2-hour windows
        # (n >= 100 each) with the day before them. Production defaults: 1 h against 7 d.
        "PEAKEND_ALERT_WINDOW_SECONDS": "7200",
        "PEAKEND_ALERT_BASELINE_SECONDS": "86400",
    }
    settings = Settings.from_env(env)
    workdir = ROOT / ".stack" / "demo"
    workdir.mkdir(parents=True, exist_ok=True)
    events = workdir / f"events-{tag}.jsonl"
    print(f"== generating {args.events} events of synthetic journeys (NPS drop on phone at 28 h)")
    subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "generate", "--events", str(args.events),
         "--seed", str(args.seed), "--span", "36h", "--invalid-fraction", "0.005",
         "--mix", "bank=0.45,invest=0.1,recovery=0.1,hotel=0.15,telecom=0.1,ecommerce=0.1",
         "--drop", "segment=channel:phone,at=28h,points=40", "--output", str(events), "--quiet"],
        cwd=ROOT, env=env, check=True,
    )
    log_path = workdir / f"worker-{tag}.log"
    print(f"== starting peakend worker (log: {log_path})")
    with log_path.open("wb") as log:
        worker = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "worker"], cwd=ROOT,
                                  env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            time.sleep(3)
            print(f"== producing {events.name} to {settings.topic_touchpoints}")
            subprocess.run(
                [sys.executable, "-m", "pipeline.cli", "produce", str(events), "--dead-letters",
                 "--topic", settings.topic_touchpoints], cwd=ROOT, env=env, check=False,
            )
            produced_at = time.monotonic()
            _wait(settings, args.timeout, worker)
            print(f"== caught up {time.monotonic() - produced_at:.1f} s after the last event was "
                  "produced")
        finally:
            worker.terminate()
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
    _report(f"{base_reader}/{database}", database)
    _html_report(f"{base_reader}/{database}")
    print(f"\n(demo took {time.monotonic() - started:.0f} s)")
    return 0


def _wait(settings: Settings, timeout: float, worker: subprocess.Popen[bytes]) -> None:
    """Until every stage (journeys, segments, ClickHouse sink) has caught up with the input."""
    from pipeline.stream.lag import pipeline_lag

    deadline = time.monotonic() + timeout
    settled = 0
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise SystemExit("peakend worker exited; see its log")
        lag = pipeline_lag(settings)
        behind = sum(lag.values())
        print(f"\r   {behind:>8} records behind", end="", flush=True)
        settled = settled + 1 if behind == 0 else 0
        if settled >= 4:
            print()
            return
        time.sleep(1)
    raise SystemExit(f"the worker did not catch up within {timeout:.0f} s")


def _by_channel(wh: ServerWarehouse, metric: str) -> list[tuple[Any, ...]]:
    """Sum the latest partials per channel and let the core compute value and interval."""
    from pipeline.core.surveys import CesWindow, NpsWindow

    rows = wh.query(
        "SELECT segment_value, sum(n), sum(promoters), sum(passives), sum(detractors), "
        "sum(total), sum(total_sq), sum(easy), sum(hard) FROM metric_partials_latest "
        "WHERE metric = %(m)s AND segment_dim = 'channel' GROUP BY segment_value",
        {"m": metric},
    )
    out = []
    for channel, n, pro, pas, det, total, total_sq, easy, hard in rows:
        window = (NpsWindow(pro, pas, det) if metric == "nps"
                  else CesWindow(n, total, total_sq, easy, hard))
        est = window.result()
        out.append((channel, n, est.value, est.ci_low, est.ci_high))
    return sorted(out, key=lambda r: -int(r[1]))


def _html_report(reader_url: str) -> None:
    from pipeline import report_html

    wh = ServerWarehouse(reader_url)  # read-only, like the tables above
    try:
        page = report_html.write(wh, ROOT / "out" / "demo-report.html",
                                 title="peakend demo: synthetic journeys, NPS drop on phone")
    finally:
        wh.close()
    print(f"\nCharts of the same views (one HTML file, works offline): {page}")


def _report(reader_url: str, database: str) -> None:
    wh = ServerWarehouse(reader_url)  # what analysts and Grafana use: read-only
    try:
        status = wh.query("SELECT status, count() FROM journeys_latest GROUP BY status "
                          "ORDER BY status")
        _table("Journeys", ["status", "journeys"], status)
        _table(
            "Worst moments by touchpoint (negative peaks and ends)",
            ["touchpoint", "negative peaks", "negative ends", "peaks", "ends"],
            wh.query("SELECT touchpoint, negative_peaks, negative_ends, peaks, ends "
                     "FROM touchpoint_ranking LIMIT 8"),
        )
        _table("NPS by channel over the whole run, 95% interval (adjusted Wald)",
               ["channel", "n", "NPS", "ci_low", "ci_high"], _by_channel(wh, "nps"))
        _table("CES by channel (1-7, higher = easier), 95% interval",
               ["channel", "n", "CES", "ci_low", "ci_high"], _by_channel(wh, "ces"))
        _table(
            "Alerts (latest state)",
            ["rule", "metric", "segment", "state", "severity", "fired_at", "value", "baseline",
             "n", "p"],
            [(*row[:-1], f"{row[-1]:.1e}") for row in wh.query(
                "SELECT rule, metric, concat(segment_dim, '=', segment_value), state, severity, "
                "fired_at, value, baseline, n, p_value FROM alerts_latest "
                "ORDER BY severity = 'critical' DESC, fired_at LIMIT 12"
            )],
        )
        _table("Dead letters", ["reason", "records"],
               wh.query("SELECT reason, count() FROM dead_letters GROUP BY reason"))
        from pipeline.followups_cli import TOP_OPEN_CASES_SQL

        _table("Follow-up cases by trigger (docs/followups.md)",
               ["trigger", "status", "cases", "silent"],
               wh.query("SELECT trigger, status, count(), countIf(silent = 1) "
                        "FROM followups_latest GROUP BY trigger, status ORDER BY trigger, status"))
        _table("Top open follow-up cases (call these first)",
               ["case_id", "customer", "trigger", "priority", "opened_at", "due_at", "silent",
                "peak at", "peak", "end"],
               wh.query(TOP_OPEN_CASES_SQL)[:10])
    finally:
        wh.close()
    print(
        f"\nQuery next: eval \"$(scripts/stack.sh env)\"; clickhouse-client --user peakend_reader "
        f"--password ... --database {database}\n"
        "  tables: journeys, metric_buckets, alerts, dead_letters, touchpoint_events; views: "
        "journeys_latest, metrics_hourly, metrics_daily, touchpoint_ranking, alerts_latest\n"
        "  docs/analyst-guide.md has 14 example questions with their SQL; dashboards/ the "
        "Grafana boards."
    )
