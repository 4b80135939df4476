"""Results → ``results.json``, ``results.md`` (the README table) and PNG plots if matplotlib is
installed (it is optional: without it the plots are skipped and the table says so)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


def _f(v: Any, digits: int = 0, unit: str = "") -> str:
    if v is None:
        return "—"
    if isinstance(v, float) and math.isinf(v):
        return "∞"
    if isinstance(v, float) and math.isnan(v):
        return "—"
    return f"{v:,.{digits}f}{unit}"


def reference_table(ref: dict[str, Any]) -> str:
    """Tally beside the reference loops (``bench.reference``): one row per variant."""
    lines = ["| variant | events/s | worker CPU-ms per event | Tally's ratio (CPU per event; "
             "events/s) |", "|---|---|---|---|"]
    for name, v in ref["variants"].items():
        ratio = "—" if name == "tally" or v["tally_cpu_ratio"] is None else (
            f"x{v['tally_cpu_ratio']:.2f} CPU; variant x{v['tally_rate_ratio']:.2f} events/s")
        label = f"**{v['label']}**" if name == "tally" else v["label"]
        lines.append(f"| {label} | {_f(v['events_per_s'])} | {_f(v['cpu_ms_per_event'], 3)} | "
                     f"{ratio} |")
    return (f"{ref['events_per_run']:,} events over {ref['keys']:,} SKU@locations, "
            f"{ref['partitions']} partitions, variants interleaved, medians of "
            f"{ref['repetitions']}:\n\n" + "\n".join(lines) + "\n")


def core_table(c: dict[str, Any]) -> str:
    """The pure core per source event (``bench.core``)."""
    return ("| core, µs per source event | total (applied where read) | decode + validate | "
            "split into movements | ledger step | push + audit encode | total, every movement "
            "re-keyed |\n|---|---|---|---|---|---|---|\n"
            f"| {c['events_per_run']:,} events, {c['keys']:,} keys | {_f(c['us_per_event'], 1)} "
            f"| {_f(c['decode_us'], 1)} | {_f(c['rekey_us'], 1)} | {_f(c['ledger_us'], 1)} | "
            f"{_f(c['encode_us'], 1)} | {_f(c.get('rekeyed_us_per_event'), 1)} |\n")


def table(results: dict[str, Any]) -> str:
    r = results["benchmarks"]
    meta = results["meta"]
    rows: list[tuple[str, str, str]] = []
    if t := r.get("throughput"):
        rows += [
            ("Ledger throughput, 1 worker", _f(t["ledger_events_per_s"], 0, " events/s"),
             f"{t['keys']:,} SKU@locations, {t['events_per_run']:,} events/run; "
             f"{_f(t['ledger_events_per_worker_cpu_s'])} events per worker CPU-second"),
            ("Passthrough ceiling, aiokafka", _f(t["passthrough_aiokafka_events_per_s"], 0,
                                                  " events/s"),
             f"ledger = {t['ratio_ledger_to_aiokafka']:.1%} of it"),
            ("Passthrough ceiling, confluent-kafka",
             _f(t["passthrough_confluent_events_per_s"], 0, " events/s"),
             f"ledger = {t['ratio_ledger_to_confluent']:.1%} of it"),
        ]
    if lat := r.get("latency"):
        for rate, v in lat["rates"].items():
            rows.append((f"End-to-end latency at {int(rate):,} events/s",
                         f"p50 {_f(v['p50_s'], 2)} s · p95 {_f(v['p95_s'], 2)} s · "
                         f"p99 {_f(v['p99_s'], 2)} s",
                         f"{v['repetitions']} x {lat['seconds_per_run']:.0f} s"))
        rows.append(("Highest tested rate with p99 < 2 s",
                     _f(lat["highest_rate_p99_under_2s"], 0, " events/s"),
                     f"sink window {lat['sink_window_s']} s (default); rates tested: "
                     + ", ".join(f"{x:,.0f}" for x in lat["rates_tested"])))
        if half := lat.get("half_capacity"):
            for name, window in (("sink_window_default", f"{lat['sink_window_s']} s, quick "
                                  "window 0.2 s while the budget is spare (defaults)"),
                                 ("sink_quick_window_off", f"{lat['sink_window_s']} s alone"),
                                 ("sink_window_0.5s", "0.5 s alone")):
                if name not in half:  # results written before the quick window
                    continue
                v = half[name]
                rows.append((f"Latency at half capacity ({half['rate']:,} events/s), "
                             f"sink window {window}",
                             f"p50 {_f(v['p50_s'], 2)} s · p95 {_f(v['p95_s'], 2)} s · "
                             f"p99 {_f(v['p99_s'], 2)} s (in the worker: p99 "
                             f"{_f(v.get('worker_p99_s'), 2)} s)",
                             f"goal p99 < {half['p99_target_s']:.0f} s: "
                             f"{'met' if half['met'][name] else 'not met'}; capacity "
                             f"{_f(half['capacity_events_per_s'])} events/s"))
        for name, ser in lat.get("series", {}).items():
            window = ser["sink_window_s"]
            for rate, v in ser["rates"].items():
                rows.append((f"Latency at {int(rate):,} events/s, sink window {window} s",
                             f"p50 {_f(v['p50_s'], 2)} s · p95 {_f(v['p95_s'], 2)} s · "
                             f"p99 {_f(v['p99_s'], 2)} s", f"{v['repetitions']} runs ({name})"))
            rows.append((f"Highest tested rate with p99 < 2 s, sink window {window} s",
                         _f(ser["highest_rate_p99_under_2s"], 0, " events/s"), ""))
    if a := r.get("api_efficiency"):
        rows += [
            ("Tally sink, Standard plan", f"{_f(a['tally_updates_per_1000_points'])} updates / "
             f"1,000 points; {_f(a['tally_updates_per_s_budget_ceiling'])} updates/s budget "
             "ceiling", f"{_f(a['tally_items_per_call'])} items/call; offered "
             f"{a['offered_rate']:,.0f} updates/s, delivered "
             f"{_f(a['tally_updates_per_s_measured'])}/s"),
            ("(a) one inventorySetQuantities per event",
             f"{_f(a['a_updates_per_1000_points'])} updates / 1,000 points; "
             f"{_f(a['a_updates_per_s_steady'], 1)} updates/s",
             f"Tally x{a['ratio_per_1000_points_tally_to_a']:,.0f} per point, "
             f"x{a['ratio_per_s_tally_ceiling_to_a']:,.0f} per second"),
            ("(b) REST inventory_levels/set.json per event",
             f"{_f(a['b_updates_per_s_steady'], 1)} updates/s (no cost points)",
             f"Tally x{a['ratio_per_s_tally_ceiling_to_b']:,.0f} per second; REST stand-in "
             "with Shopify's 40-request bucket, 2 req/s"),
        ]
    if rec := r.get("recovery"):
        rows += [
            (f"Processing again after kill -9, {rec['keys']:,} keys",
             _f(rec.get("kill9_processing_again_s"), 1, " s"),
             f"/readyz after {_f(rec.get('kill9_ready_s'), 1, ' s')}; cold restore from the "
             f"changelog (empty disk) {_f(rec.get('cold_restore_s'), 1, ' s')}"),
            (f"Worker RSS at {rec['keys']:,} keys", _f(rec.get("rss_mib_at_keys"), 0, " MiB"),
             "RocksDB block cache 32 MiB (default)"),
        ]
    if c := r.get("catchup"):
        rows.append((f"Catch-up after kill -9 under {c['rate']:,.0f} events/s",
                     f"{_f(c['catchup_per_s'])} events/s (x{_f(c['catchup_x_input'], 2)} the "
                     f"input; goal x{c['goal_x_input']:.0f}); lag under 1 s "
                     f"{_f(c['kill_to_lag_under_1s_s'], 1, ' s')} after the kill",
                     f"processing again {_f(c['kill_to_first_apply_s'], 1, ' s')} after the kill;"
                     f" caught up in {c['caught_up_runs']} of {c['repetitions']} runs; largest lag"
                     f" before the kill {_f(c['warm_max_lag_s'], 1, ' s')}"))
    if sn := r.get("snapshot"):
        rows.append((f"Full-count snapshot, {sn['lines']:,} lines",
                     f"{_f(sn['lines_per_s'])} lines/s applied; Shopify consistent after "
                     f"{_f(sn['to_consistent_s'], 1, ' s')}",
                     f"{_f(sn['pushes'])} pushes in {_f(sn['shopify_calls'])} Shopify calls "
                     f"({_f(sn['shopify_cost_points'])} cost points, "
                     f"{_f(sn['shopify_throttled'])} THROTTLED)"))
    if s := r.get("scaleout"):
        rows.append(("Scale-out, 2 workers vs 1", f"{_f(s['two_workers_events_per_s'])} vs "
                     f"{_f(s['one_worker_events_per_s'])} events/s (x{s['speedup']:.2f})",
                     f"{s['partitions']} partitions, same host"))
    if v := r.get("variants"):
        for name, x in v["variants"].items():
            rows.append((f"Worker variant: {name}", _f(x["events_per_s"], 0, " events/s"),
                         f"x{x['vs_baseline']:.2f} vs baseline; "
                         f"{_f(x['events_per_worker_cpu_s'])} events per CPU-second "
                         f"(x{x['cpu_vs_baseline']:.2f})"))
    head = (f"Measured {meta['date']} on {meta['machine']['cpus']} CPUs, load average "
            f"{meta['machine']['loadavg_1m_at_start']} at start; mode: {meta['mode']}; "
            f"each figure the median of the repetitions shown in results.json.\n\n")
    lines = ["| Benchmark | Result | Notes |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    foot = ("\n∞: some events were not acknowledged by Shopify before the drain deadline (the "
            "rate is above what the pipeline sustained); the median of repetitions with an ∞ "
            "can itself be ∞.\n") if "∞" in "".join(b for _, b, _ in rows) else ""
    return head + "\n".join(lines) + "\n" + foot


def plots(results: dict[str, Any], out: Path) -> list[str]:
    """Latency percentiles per rate (log scale). Empty list if matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    made = []
    lat = results["benchmarks"].get("latency")
    if lat:
        fig, ax = plt.subplots(figsize=(6, 4))
        series = [(f"window {lat['sink_window_s']} s", lat["rates"], "-")] + [
            (f"window {v['sink_window_s']} s", v["rates"], ":")
            for v in lat.get("series", {}).values()]
        for label, by_rate, style in series:
            keys = sorted(by_rate, key=float)
            for q in ("p50_s", "p99_s"):
                ys = [by_rate[x][q] for x in keys]
                ys = [y if math.isfinite(y) else float("nan") for y in ys]
                ax.plot([float(x) for x in keys], ys, style, marker="o",
                        label=f"{q[:-2]}, {label}")
        ax.axhline(2.0, color="grey", linestyle="--", linewidth=1, label="2 s target")
        ax.set_xscale("log")
        ax.set_yscale("log")
        from matplotlib.ticker import ScalarFormatter

        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_formatter(ScalarFormatter())
        ax.set_xlabel("offered events/s")
        ax.set_ylabel("source event → Shopify ack (s)")
        ax.set_title("Tally end-to-end latency (missing point = not sustained)")
        ax.legend()
        fig.tight_layout()
        path = out / "latency.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        made.append(path.name)
    return made


def write(results: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    results["plots"] = plots(results, out)
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    md = "# Tally benchmark results\n\n" + table(results)
    if ref := results["benchmarks"].get("reference"):
        md += "\n## Tally's worker beside reference loops\n\n" + reference_table(ref)
    if c := results["benchmarks"].get("core"):
        md += "\n## Tally's pure core (no Kafka)\n\n" + core_table(c)
    if results["plots"]:
        md += "\n" + "\n".join(f"![{p}]({p})" for p in results["plots"]) + "\n"
    if prof := results["benchmarks"].get("profile"):
        md += "\n## Worker profile (py-spy, share of samples)\n\n| self | function |\n|---|---|\n"
        md += "\n".join(f"| {r['share']:.1%} | `{r['function']}` |"
                        for r in prof.get("self", [])[:15]) + "\n"
    (out / "results.md").write_text(md)
