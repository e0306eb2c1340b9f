"""Two arms that differ in one switch, everything else equal, over seeds: the shape of the
normalisation (section 3.3), pooling (3.4), dropout (4.2) and colour-noise (4.1) claims.

Every arm trains the same schedule on the same data with the same seeds (so the same data order
and, where the shapes agree, the same initial weights); the test split is evaluated once, after
the last epoch, with the final weights. When a deadline stops the runs, the two arms of a seed
are first brought to the same number of epochs (the one behind trains past the deadline), so
that neither arm's test error counts an extra epoch. The effect is the per-seed paired
difference of test top-1 error, second arm minus first (the arm without the paper's choice
minus the arm with it).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from alexnet.experiments.common import Context, fit_all, merged, summary, write_result
from alexnet.viz.common import new_figure, save


def row(what: str, paper: str | None, numbers: dict[str, Any], unit: str) -> dict[str, Any]:
    """One line of the results table: the quantity, the paper's value, ours over seeds."""
    return {"what": what, "paper": paper, "ours": numbers, "unit": unit}


def run_comparison(
    ctx: Context,
    base: dict[str, Any],
    arms: dict[str, dict[str, Any]],
    epochs: int,
    info: dict[str, Any],
    runs: Path | None = None,
    run_names: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Train `arms` (name -> config fields over `base`) for `epochs` per seed; result.json with
    test errors per arm, the paired effect, and a figure. `info` holds claim, paper, notes.

    Run directories are `runs` (default OUT/runs) / `<run_names[arm] or the arm's name>-seed<s>`:
    experiments given the same `runs` and run name for the same config share the run."""
    names = list(arms)
    if len(names) != 2:
        raise ValueError(f"a comparison has two arms, got {names}")
    runs = runs or ctx.out / "runs"
    stems = {arm: (run_names or {}).get(arm) or _slug(arm) for arm in names}
    tasks = {
        f"{arm} seed {seed}": (
            merged(base, arms[arm], {"seed": seed}),
            runs / f"{stems[arm]}-seed{seed}",
        )
        for seed in range(ctx.seeds)
        for arm in names
    }
    results = fit_all(ctx, [(key, lay, run, epochs, None) for key, (lay, run) in tasks.items()])
    behind = lagging(results, names, ctx.seeds)
    if behind:
        ctx.log(f"bringing {len(behind)} run(s) level with the other arm of their seed")
        level = [(key, *tasks[key], target, None) for key, target in behind.items()]
        for key, caught_up in fit_all(replace(ctx, deadline=None), level).items():
            caught_up["seconds"] += results[key]["seconds"]  # the run's time in both calls
            results[key] = caught_up
    per_arm: dict[str, Any] = {}
    for arm in names:
        runs = [results[f"{arm} seed {s}"] for s in range(ctx.seeds)]
        per_arm[arm] = {
            "config": arms[arm],
            "test_top1_err": summary([_test(r, "top1_err") for r in runs]),
            "test_top5_err": summary([_test(r, "top5_err") for r in runs]),
            "final_train_top1_err": summary([_last(r, "train_top1_err") for r in runs]),
            "diverged": [r["diverged"] for r in runs],
            "cut_short": [not r["diverged"] and len(r["records"]) < epochs for r in runs],
            "epochs_run": [len(r["records"]) for r in runs],
            "seconds": [round(r["seconds"], 1) for r in runs],
            "curves": [[e["train_top1_err"] for e in r["records"]] for r in runs],
            "run_dirs": [r["run_dir"] for r in runs],
        }
        val_curves = [[e.get("val_top1_err") for e in r["records"]] for r in runs]
        if any(v is not None for curve in val_curves for v in curve):
            per_arm[arm]["val_curves"] = val_curves
    first, second = (per_arm[n]["test_top1_err"]["per_seed"] for n in names)
    effect = summary(
        [
            b - a if a is not None and b is not None else None
            for a, b in zip(first, second, strict=True)
        ]
    )
    paper = info["paper"]
    rows = [
        row(f"test top-1 error, {n}", paper.get(n), per_arm[n]["test_top1_err"], "%") for n in names
    ]
    rows.append(row(f"effect: {names[1]} minus {names[0]}", paper.get("effect"), effect, "points"))
    rows += [
        row(f"final training error, {n}", None, per_arm[n]["final_train_top1_err"], "%")
        for n in names
    ]
    rows += [row(*r) for n in names for r in _overfit_rows(n, per_arm[n])]
    title = info.get("title", ctx.name)
    if ctx.smoke:
        title = f"{ctx.name} --smoke on synthetic data (not {ctx.data}): measures nothing"
    figure = plot_arms(per_arm, ctx.out / f"{ctx.name}.png", title)
    result = {
        **info,
        "base_config": base,
        "epochs": epochs,
        "arms": per_arm,
        "effect": effect,
        "rows": rows,
        "figure": figure.name,
    }
    write_result(ctx, result)
    return result


def _overfit_rows(arm: str, data: dict[str, Any]) -> list[tuple[str, None, dict[str, Any], str]]:
    """The overfitting measures of an arm: the generalisation gap (test error minus final
    training error) and, where a val split was measured every epoch, how far its val error ended
    above its minimum (above 0: it turned up) and at which epoch the minimum fell."""
    tests, trains = data["test_top1_err"]["per_seed"], data["final_train_top1_err"]["per_seed"]
    gap = [
        t - r if t is not None and r is not None else None
        for t, r in zip(tests, trains, strict=True)
    ]
    out = [(f"train/test gap, {arm}", None, summary(gap), "points")]
    curves = data.get("val_curves")
    if curves:
        clean = [[v for v in curve if v is not None] for curve in curves]
        rise = [c[-1] - min(c) if c else None for c in clean]
        best = [1 + c.index(min(c)) if c else None for c in clean]
        rising = f"val error at the end minus its minimum, {arm}"
        out.append((rising, None, summary(rise), "points"))
        out.append((f"epoch of the val minimum, {arm}", None, summary(best), "epochs"))
    return out


def lagging(results: dict[str, dict[str, Any]], names: list[str], seeds: int) -> dict[str, int]:
    """{run key: epochs to train to} for each run that has fewer epochs than the other arm of
    its seed (a deadline stopped them apart); diverged runs neither lag nor set the level."""
    out: dict[str, int] = {}
    for seed in range(seeds):
        keys = [f"{arm} seed {seed}" for arm in names]
        alive = [key for key in keys if not results[key]["diverged"]]
        level = max((len(results[key]["records"]) for key in alive), default=0)
        out.update({key: level for key in alive if len(results[key]["records"]) < level})
    return out


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text).strip("-")


def _test(result: dict[str, Any], key: str) -> float | None:
    return None if result["diverged"] or not result["test"] else float(result["test"][key])


def _last(result: dict[str, Any], key: str) -> float | None:
    return float(result["records"][-1][key]) if result["records"] else None


def plot_arms(per_arm: dict[str, Any], path: Path, title: str) -> Path:
    """Left: training error per epoch, every seed (first arm solid, second dashed). Right: test
    top-1 error per seed (dots) and the mean (bar) of each arm."""
    fig = new_figure(900, 380)
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    with_val = any("val_curves" in data for data in per_arm.values())
    for (arm, data), style in zip(per_arm.items(), ("-", "--"), strict=True):
        for i, curve in enumerate(data["curves"]):
            x = range(1, len(curve) + 1)
            left.plot(
                x,
                [100 * e for e in curve],
                style,
                marker=".",
                color="k",
                label=f"{arm}, train" if i == 0 else None,
            )
        for i, curve in enumerate(data.get("val_curves", [])):
            points = [(j + 1, 100 * v) for j, v in enumerate(curve) if v is not None]
            left.plot(
                [p[0] for p in points],
                [p[1] for p in points],
                style,
                color="tab:red",
                label=f"{arm}, val" if i == 0 else None,
            )
    curves = "training (black) and val (red) error" if with_val else "running training error"
    left.set(xlabel="epoch", ylabel="top-1 error (%)", title=curves)
    left.legend(fontsize=8)
    for i, data in enumerate(per_arm.values()):
        values = [100 * v for v in data["test_top1_err"]["per_seed"] if v is not None]
        if values:
            right.bar(i, sum(values) / len(values), color="0.8", width=0.6)
            right.plot([i] * len(values), values, "ko")
    right.set_xticks(range(len(per_arm)), list(per_arm), fontsize=8)
    right.set(ylabel="test top-1 error (%)", title="test error per seed")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save(fig, path)
