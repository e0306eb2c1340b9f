"""The human-readable report of `alexnet bench` (the JSON carries the same numbers)."""

from __future__ import annotations


def _fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def _machine(r: dict) -> list[str]:
    m, st = r["machine"], r["settings"]
    size = f"input {st['input_size']} px" if st.get("input_size") else "each model's own input"
    runs = f"{st['repeats']} round{'s' if st['repeats'] != 1 else ''}"
    return [
        f"machine: {m['cpu']} ({m['cpu_kind']}) | flags {','.join(m['cpu_flags']) or '-'} | "
        f"{m['threads']} threads | allocator {m['allocator']} | LRN {m['lrn_backend']} | best "
        f"precision {m['best_precision']} | torch {m['torch']} | load {m['load_avg'][0]:.2f} -> "
        f"{m.get('load_avg_end', m['load_avg'])[0]:.2f} | photos {m.get('photos', '?')}",
        f"sizes: batch {st['batch']}, {runs} per table, interleaved (one call of each side per "
        f"round; medians, ratios paired by round), {size}, ceiling: "
        f"{st['matmul_n']}^3 matmul",
    ]


def _lrn(r: dict) -> list[str]:
    lines = ["\nLRN forward+backward (channels_last)   fused ms   nn ms  floor ms  x floor  x nn"]
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
    return lines


def _table(title: str, table: dict, latency: bool) -> list[str]:
    head = "latency ms" if latency else "     img/s"
    lines = [
        f"\n{title}: ceiling {table['ceiling_gflops']:.0f} GFLOP/s",
        f"  {'':<48} {head}  GFLOP/s  of ceiling  x naive  x owt",
    ]
    for row in table["rows"]:
        value = row["latency_ms"] if latency else row["img_s"]
        share = 100 * row["of_ceiling"]
        lines.append(
            f"  {row['label']:<48} {value:10.1f} {row['gflops']:8.1f} {share:10.1f}%"
            f" {_fmt(row.get('x_naive'), '8.2f')} {_fmt(row.get('x_owt'), '6.2f')}"
        )
    lay = table["layout"]
    lines.append(
        f"  layout: channels_last x{lay['channels_last_x_nchw']:.2f} NCHW (faster in "
        f"{lay['channels_last_wins']} rounds); the rule picks {lay['chosen']} ({lay['reason']})"
    )
    if "lrn_gain" in table:
        lines.append(
            f"  fused LRN vs nn.LocalResponseNorm in the same net: x{table['lrn_gain']:.2f}"
        )
    return lines


def format_results(r: dict) -> str:
    """Tables: machine, LRN, training, data, inference, targets (and the profile)."""
    lines = _machine(r) + _lrn(r)
    for t in r["train"]:
        lines += _table(f"training step ({t['precision']}, batch {t['batch']})", t, False)
    d = r["data"]
    lines.append(f"\ntraining step ({d['precision']}) fed in-process     img/s  of synthetic")
    for row in d["rows"]:
        lines.append(f"  {row['label']:<38} {row['img_s']:7.1f} {100 * row['of_synthetic']:8.0f}%")
    lines.append(
        "  loaders alone, per core: "
        + ", ".join(f"{k} {v:.0f} img/s" for k, v in d["loader_img_s_per_core"].items())
    )
    for precision, shares in r["step_shares"].items():
        parts = ", ".join(f"{kind} {100 * v:.0f}%" for kind, v in shares.items())
        lines.append(f"  one alexnet {precision} step, profiled (own time): {parts}")
    for t in r["infer"]:
        lines += _table(f"inference ({t['precision']}, batch {t['batch']})", t, t["batch"] == 1)
    for key, tables in r.get("gpu", {}).items():
        for t in tables:
            title = f"GPU {r['machine']['cuda']} {key} ({t['precision']}, batch {t['batch']})"
            lines += _table(title, t, key == "infer" and t["batch"] == 1)
    lines.append(
        "\ntargets (the fp32 step's bar against the limit; the rest set for bf16 on a CPU with AMX)"
    )
    for t in r["targets"]:
        mark = {True: "met", False: "NOT met", None: "not measured"}[t["met"]]
        lines.append(f"  {t['target']:<52} {_fmt(t['value'], '.3g'):>8} {t['goal']:<8} {mark}")
    for precision, table in r.get("profile", {}).items():
        lines.append(f"\nprofile of one alexnet training step, {precision}\n{table}")
    return "\n".join(lines)
