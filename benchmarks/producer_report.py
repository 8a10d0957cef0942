"""The tables ``bench_producer.py`` prints from its report (rates, ratios, memory, stages, profile)."""
from __future__ import annotations

from typing import Dict

from common import format_table


def _fmt_rate(s) -> str:
    return f"{s['best']:.0f} / {s['median']:.0f}"


def print_report(report: Dict, goal_ratio: float) -> None:
    """The result tables on stdout; ``goal_ratio`` is the goal of the loop rate against read-only."""
    p, ro = report["producer_1_rank"], report["read_only"]
    rows = [
        ["h5py read-only (image/data)", _fmt_rate(ro["h5py_fps"]), "", ""],
        ["extra-data read-only (image/data)", _fmt_rate(ro["extra_data_fps"]), "", ""],
        ["producer, 1 rank, loop", _fmt_rate(p["loop_fps"]), f"{report['ratio_loop_fps_best']:.3f}",
         f"{p['max_rss_mb']:.0f}"],
        ["producer, 1 rank, end to end", _fmt_rate(p["end_to_end_fps"]), f"{report['ratio_end_to_end_best']:.3f}",
         ""],
    ]
    large = report["producer_large_batch_1_rank"]
    if large:
        rows.append([f"h5py read-only, batch {large['batch_size']}", _fmt_rate(large["h5py_fps"]), "", ""])
        rows.append([f"producer, 1 rank, loop, batch {large['batch_size']}", _fmt_rate(large["loop_fps"]),
                     f"{large['ratio_loop_best']:.3f}", f"{large['max_rss_mb']:.0f}"])
    cold = report.get("producer_cold_1_rank")
    if cold:
        rows.append(["h5py read-only, cold page cache", _fmt_rate(cold["h5py_fps"]), "", ""])
        rows.append(["producer, 1 rank, loop, cold page cache", _fmt_rate(cold["loop_fps"]),
                     f"{cold['ratio_loop_best']:.3f}", f"{cold['max_rss_mb']:.0f}"])
    multi = report["producer_n_ranks"]
    if multi:
        rows.append([f"producer, {multi['ranks']} ranks, loop", _fmt_rate(multi["loop_fps"]),
                     f"{multi['ratio_loop_best']:.3f}", f"{multi['max_rss_mb']:.0f}"])
    d = report["data"]
    print(f"\nproducer benchmark: {d['trains']} trains x {d['frames_per_train']} frames, module {d['roi_module']}, "
          f"batch {d['batch_size']} frames")
    print(format_table(rows, ["measurement", "frames/s best / median", "ratio to h5py", "max RSS MB"]))
    print(f"start-up (median): {p['startup_s_median']:.2f} s; set-up + merge: {p['setup_merge_s_median']:.2f} s")
    m = report["memory"]
    print(f"peak RSS, 1 rank: {m['max_rss_mb_short']:.0f} MB ({m['short_trains']} trains), "
          f"{m['max_rss_mb_long']:.0f} MB ({m['long_trains']} trains): "
          f"{'bounded' if report['memory_bounded'] else 'GROWS'}; imports alone {m['max_rss_mb_imports_only']} MB")
    cold = report.get("producer_cold_1_rank")
    cold_text = "" if not cold else (f"; cold page cache (files read from disk): "
                                     f"{'met' if cold['ratio_loop_best'] >= goal_ratio else 'NOT met'} "
                                     f"({cold['ratio_loop_best']:.2f})")
    print(f"goal (loop >= {goal_ratio} x read-only): warm page cache: {'met' if report['goal_met'] else 'NOT met'} "
          f"({report['ratio_loop_fps_best']:.2f}){cold_text}")
    stages = report["profile"]["stages"]
    print("\nwhere the loop's time goes (one in-process run, exclusive wall time):")
    print(format_table([[s["stage"], f"{s['s']:.3f}", f"{s['us_per_frame']:.0f}",
                         "" if s["share"] is None else f"{100 * s['share']:.0f} %"] for s in stages],
                       ["stage", "s", "us/frame", "share of loop"]))
    top = report["profile"].get("cprofile_top_tottime")
    if top:
        print("\ncProfile, top functions by own time:")
        print(format_table([[t["function"], t["calls"], f"{t['tottime_s']:.3f}", f"{t['cumtime_s']:.3f}"]
                            for t in top[:12]], ["function", "calls", "tottime s", "cumtime s"]))
