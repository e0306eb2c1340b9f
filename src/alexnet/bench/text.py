"""The human-readable report of `alexnet bench` (the JSON carries the same numbers)."""

from __future__ import annotations


def _fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def format_results(r: dict) -> str:
    """Tables: machine, matmul ceiling, LRN, training, inference, loaders, targets."""
    m, lines = r["machine"], []
    lines.append(
        f"machine: {m['cpu']} | flags {','.join(m['cpu_flags']) or '-'} | {m['threads']} threads"
        f" | allocator {m['allocator']} | LRN {m['lrn_backend']} | best precision "
        f"{m['best_precision']} | torch {m['torch']} | load {m['load_avg'][0]:.2f} -> "
        f"{m.get('load_avg_end', m['load_avg'])[0]:.2f} | photos {m.get('photos', '?')}"
    )
    mm, st = r["matmul_gflops"], r["settings"]
    lines.append(
        "matmul ceiling: "
        + ", ".join(f"{p} {v:.0f} GFLOP/s" for p, v in mm.items())
        + ("" if "bf16" in mm else " (bf16 not timed: no fast bf16 here; --all-precisions)")
    )
    size = f"input {st['input_size']} px" if st.get("input_size") else "each model's own input"
    runs = f"{st['repeats']} repeat{'s' if st['repeats'] != 1 else ''}"
    lines.append(f"sizes: batch {st['batch']}, {runs} per row (median), {size}")
    lines.append(
        "\nLRN forward+backward (channels_last)   fused ms   nn ms  floor ms  x floor  x nn"
    )
    for row in r["lrn"]:
        shape = "x".join(map(str, row["shape"]))
        x_floor = (
            "below resolution"
            if row.get("below_resolution")
            else f"{row['x_floor']:8.2f} {row['speedup_vs_nn']:5.1f}"
        )
        lines.append(
            f"  {row['layer']} {row['precision']} {shape:<18}      {row['fused_ms']:8.1f} "
            f"{row['nn_ms']:7.1f} {row['floor_ms']:9.1f} {x_floor}"
        )
    lines.append(
        f"\ntraining, batch {st['batch']}, median of {st['repeats']}, {size:<22} img/s  "
        "GFLOP/s  x base  of ceiling"
    )
    skipped = [row for row in r["train"] if "skipped" in row]
    if skipped:
        lines.append(f"  ({len(skipped)} bf16 rows not run: {skipped[0]['skipped']})")
    for row in r["train"]:
        if "skipped" in row:
            continue
        lines.append(
            f"  {row['label']:<40} {row['img_s']:7.1f} {row['gflops']:8.1f} "
            f"{row['x_baseline']:7.2f} {100 * row['of_ceiling']:9.1f}%"
        )
    lines.append(
        f"  LRN share of the alexnet step (profiled): {100 * r['lrn_share']:.1f}%"
        f"; fused vs nn.LocalResponseNorm net: x{_fmt(r.get('lrn_gain'), '.2f')}"
    )
    lines.append(f"\ninference (alexnet, {size})   batch  latency ms   img/s")
    for row in r["infer"]:
        lines.append(
            f"  {row['precision']:<26} {row['batch']:5d} {row['latency_ms']:11.1f} "
            f"{row['img_s']:7.1f}"
        )
    lines.append(
        "\nloaders alone, per core: "
        + ", ".join(f"{k} {v:.0f} img/s" for k, v in r["loader_img_s_per_core"].items())
    )
    if "gpu" in r:
        g = r["gpu"]
        lines.append(
            f"\nGPU ({m['cuda']}): matmul fp32 {g['matmul_gflops']['fp32']:.0f}, "
            f"bf16 {g['matmul_gflops']['bf16']:.0f} GFLOP/s"
        )
        for row in g["train"]:
            lines.append(f"  {row['label']:<40} {row['img_s']:7.1f} img/s {row['gflops']:8.1f}")
        for row in g["infer"]:
            lines.append(
                f"  inference {row['precision']} batch {row['batch']}: "
                f"{row['latency_ms']:.2f} ms, {row['img_s']:.0f} img/s"
            )
    lines.append("\nspeed targets (set for bf16 on a CPU with AMX)")
    for t in r["targets"]:
        mark = {True: "met", False: "NOT met", None: "not measured"}[t["met"]]
        lines.append(f"  {t['target']:<52} {_fmt(t['value'], '.3g'):>8} {t['goal']:<8} {mark}")
    if "profile" in r:
        lines.append("\nprofile of one alexnet training step\n" + r["profile"])
    return "\n".join(lines)
