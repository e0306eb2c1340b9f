"""The training loop: plain SGD steps, per-epoch validation, checkpoints that resume exactly.

Exact resume rests on three things: the loader's batches are a pure function of (seed, epoch,
index), so `loader.epoch(e, start_batch=b)` replays the rest of an epoch; the checkpoint holds
every RNG state (dropout draws from torch's); and the counters (epoch, step, batch_in_epoch)
and the running train sums are saved with the weights.
"""

from __future__ import annotations

import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from alexnet.eval.metrics import Meter
from alexnet.runtime import autocast, memory_format
from alexnet.train import checkpoint as ckpt_io
from alexnet.train.config import TrainConfig, config_to_dict
from alexnet.train.distributed import DistContext, all_reduce_mean
from alexnet.train.metrics_log import RunLog, epoch_records
from alexnet.train.optim import LRSchedule, make_optimizer
from alexnet.train.towers import load_portable_state_dict, portable_state_dict

RISE, RISE_STEPS = 2.0, 100  # warn when the loss exceeds 2x its first value in 100 steps

# Asked after every epoch's record with the run's epoch records so far (those of earlier,
# resumed invocations included): True ends `fit` there, after last.pt is saved, so that a later
# `--resume` continues exactly (experiments stop at a target error or a deadline this way).
StopCondition = Callable[[list[dict[str, Any]]], bool]


class BatchSource(Protocol):
    """What the loop needs from a loader (alexnet.data.loader's contract)."""

    def __len__(self) -> int: ...
    def epoch(
        self, epoch: int, start_batch: int = 0
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...


class NonFiniteLossError(RuntimeError):
    """The loss or the weights became NaN or infinite; the last good checkpoint is kept."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C: the run stopped at a step boundary and saved checkpoints/last.pt (still an
    interrupt to code that does not know it: nothing catching Exception swallows it)."""


class _InterruptFlag:
    """SIGINT sets `raised` (the loop stops after the step in progress and saves); a second
    SIGINT raises KeyboardInterrupt at once. Only the main thread can take signals."""

    def __init__(self) -> None:
        self.raised = False
        self._previous: Any = None

    def __enter__(self) -> _InterruptFlag:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.raised:
            raise KeyboardInterrupt
        self.raised = True
        print(
            "\ninterrupt: saving a checkpoint after this step (Ctrl-C again to quit without)",
            file=sys.stderr,
            flush=True,
        )


@dataclass
class Progress:
    """Counters saved with every checkpoint."""

    epoch: int = 0  # the epoch in progress (0-based)
    step: int = 0  # optimizer steps taken in all
    batch_in_epoch: int = 0  # batches of `epoch` already trained on
    best_metric: float = float("inf")  # best val top-1 error (train's without a val split)
    train_sums: list[float] = field(default_factory=list)  # Meter sums of the partial epoch


class Trainer:
    """Owns the model, optimizer, schedule and logs of one run; `fit` trains it."""

    def __init__(
        self,
        config: TrainConfig,
        model: nn.Module,
        train_loader: BatchSource,
        val_loader: BatchSource | None,
        *,
        preprocess: dict[str, Any],
        run_dir: Path,
        device: torch.device,
        precision: str,
        ctx: DistContext | None = None,
        param_groups: list[dict[str, Any]] | None = None,
    ) -> None:
        self.config, self.model, self.device, self.precision = config, model, device, precision
        self.train_loader, self.val_loader = train_loader, val_loader
        self.preprocess, self.run_dir = preprocess, Path(run_dir)
        self.ctx = ctx or DistContext()
        self.core = model.module if isinstance(model, DistributedDataParallel) else model
        self.num_classes = int(self.core.num_classes)
        self.optimizer = make_optimizer(param_groups or model.parameters(), config)
        self.schedule = LRSchedule(self.optimizer, config)
        self.progress = Progress()
        self.log: RunLog | None = None
        self._stuck = 0  # consecutive steps with the loss near ln(num_classes)
        self._first_loss: float | None = None  # for the early-rise warning
        self._rise_warned = False
        self._interrupt = _InterruptFlag()
        self._stop = False  # an interrupt every rank has seen (reduced with the loss)
        self.memory_format = memory_format(device, precision, config.memory_format)

    # -- checkpoints -------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """The checkpoint dict (docs/architecture.md)."""
        core = self.core
        return {
            "model": portable_state_dict(core),
            "model_name": core.model_name,
            "model_options": dict(core.model_options),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.schedule.state_dict(),
            "scaler": {},  # bf16 needs no loss scaling; kept for the format
            "epoch": self.progress.epoch,
            "step": self.progress.step,
            "batch_in_epoch": self.progress.batch_in_epoch,
            "train_sums": list(self.progress.train_sums),
            "rng": ckpt_io.rng_state(),
            "best_metric": self.progress.best_metric,
            "config": config_to_dict(self.config),
            "preprocess": self.preprocess,
        }

    def load_state(self, ckpt: dict[str, Any], lr: float | None = None) -> None:
        """Continue from `ckpt`; `lr` (given on the command line) replaces the saved lr."""
        load_portable_state_dict(self.core, ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.schedule.load_state_dict(ckpt["scheduler"])
        if lr is not None:
            self.schedule.set_lr(lr)
        self.progress = Progress(
            epoch=int(ckpt["epoch"]),
            step=int(ckpt["step"]),
            batch_in_epoch=int(ckpt["batch_in_epoch"]),
            best_metric=float(ckpt["best_metric"]),
            train_sums=[float(v) for v in ckpt.get("train_sums", [])] if self.ctx.is_main else [],
        )
        ckpt_io.set_rng_state(ckpt["rng"])

    def save(self, best: bool = False) -> None:
        """checkpoints/last.pt (and best.pt), rank 0 only, atomically; never non-finite weights
        (every rank checks its identical copy, so all stop together)."""
        self._check_finite_weights()
        if not self.ctx.is_main:
            return
        state = self.state()
        ckpt_io.save_atomic(state, self.run_dir / "checkpoints" / "last.pt")
        if best:
            ckpt_io.save_atomic(state, self.run_dir / "checkpoints" / "best.pt")

    def _last_good(self) -> str:
        last = self.run_dir / "checkpoints" / "last.pt"
        if last.is_file():
            return f"the last good checkpoint is {last}"
        return "no checkpoint had been saved yet"

    def _check_finite_weights(self) -> None:
        tensors = [*self.core.named_parameters(), *self.core.named_buffers()]
        bad = [n for n, t in tensors if t.is_floating_point() and not bool(t.isfinite().all())]
        if bad:
            raise NonFiniteLossError(
                f"the weights became non-finite ({', '.join(bad[:3])}{', ...' if bad[3:] else ''}"
                f") by step {self.progress.step} (epoch {self.progress.epoch + 1}); they were not "
                f"saved and {self._last_good()}. Lower --lr or check the data."
            )

    # -- one pass ----------------------------------------------------------------------------
    def _forward_loss(
        self, images: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        images = images.to(self.device, non_blocking=True, memory_format=self.memory_format)
        labels = labels.to(self.device, non_blocking=True)
        with autocast(self.device, self.precision):
            logits = self.model(images)
        return logits, F.cross_entropy(logits.float(), labels)

    def train_step(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, float]:
        """One SGD step; returns the logits and the loss averaged over ranks."""
        logits, loss = self._forward_loss(images, labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        # averaged over ranks so that every rank sees the same value and stops together on NaN
        # with it, whether any rank was interrupted, so that all stop after the same step
        flag = torch.tensor(float(self._interrupt.raised), device=loss.device)
        reduced = all_reduce_mean(torch.stack([loss.detach().float(), flag]), self.ctx)
        mean_loss, self._stop = float(reduced[0]), bool(reduced[1] > 0)
        if not math.isfinite(mean_loss):
            raise NonFiniteLossError(
                f"loss became {mean_loss} at step {self.progress.step + 1} (epoch "
                f"{self.progress.epoch + 1}); the update was not applied and "
                f"{self._last_good()}. Lower --lr or check the data."
            )
        self.optimizer.step()
        return logits, mean_loss

    @torch.no_grad()
    def validate(self) -> dict[str, Any] | None:
        """Loss and top-1/top-5 over the val split, every sample counted once over ranks."""
        if self.val_loader is None:
            return None
        self.model.eval()
        meter = Meter(self.num_classes)
        for images, labels in self.val_loader.epoch(0):
            logits, loss = self._forward_loss(images, labels)
            meter.update(logits, labels, float(loss) * labels.numel())
        meter.all_reduce()
        return meter.result()

    # -- the run -----------------------------------------------------------------------------
    def fit(
        self, resume_step: int | None = None, stop: StopCondition | None = None
    ) -> dict[str, Any]:
        """Train to `config.epochs` (or `max_steps`), or until `stop` holds after an epoch;
        returns the last epoch's record."""
        self.log = RunLog(self.run_dir if self.ctx.is_main else None, resume_step)
        # read after RunLog dropped what followed the checkpoint being resumed
        records = epoch_records(self.run_dir) if stop is not None and self.ctx.is_main else []
        record: dict[str, Any] = {}
        try:
            with self._interrupt:
                while self.progress.epoch < self.config.epochs and not self._steps_done():
                    ended = self._train_epoch()
                    if self._interrupt.raised and not self.ctx.enabled:  # during validation
                        self._interrupted()
                    if ended is None:  # cut short by max_steps: the loop ends
                        continue
                    record = ended
                    records.append({"kind": "epoch", **record})  # as metrics.jsonl holds it
                    if stop is not None and self._agreed(self.ctx.is_main and stop(records)):
                        break
        finally:
            self.log.close()
        return record

    def _agreed(self, wanted: bool) -> bool:
        """Rank 0's stop decision, shared by every rank (the others pass False), so that all
        stop after the same epoch: its records and its clock decide."""
        flag = torch.tensor([float(wanted)], device=self.device)
        return bool(all_reduce_mean(flag, self.ctx)[0] > 0)

    def _interrupted(self) -> None:
        """Stop after a Ctrl-C; the caller has just saved checkpoints/last.pt."""
        prog = self.progress
        epoch = prog.epoch + 1 if prog.batch_in_epoch else prog.epoch
        raise TrainingInterrupted(
            f"interrupted at epoch {epoch} step {prog.step}; saved "
            f"{self.run_dir / 'checkpoints' / 'last.pt'}; continue with "
            f"alexnet train --resume {self.run_dir}"
        )

    def _total_steps(self) -> int:
        """Steps in `epochs` epochs: what cosine anneals over (max_steps only stops early, so a
        run cut by it and resumed keeps the same curve)."""
        return self.config.epochs * len(self.train_loader)

    def _steps_done(self) -> bool:
        return 0 < self.config.max_steps <= self.progress.step

    def _train_epoch(self) -> dict[str, Any] | None:
        """Run (the rest of) one epoch; the epoch record, or None if max_steps cut it short."""
        cfg, prog = self.config, self.progress
        self.model.train()
        meter = Meter(self.num_classes)
        if prog.train_sums:
            meter.load_sums(torch.tensor(prog.train_sums, dtype=torch.float64))
        bar = self._bar(prog.batch_in_epoch)
        start = time.perf_counter()
        seen, ln_c = 0, math.log(self.num_classes)
        for images, labels in self.train_loader.epoch(prog.epoch, start_batch=prog.batch_in_epoch):
            self.schedule.at_step(prog.step, self._total_steps())
            logits, loss = self.train_step(images, labels)
            meter.update(logits, labels, loss * labels.numel())
            prog.step += 1
            prog.batch_in_epoch += 1
            seen += labels.numel() * self.ctx.world_size
            img_per_s = seen / max(time.perf_counter() - start, 1e-9)
            self._stuck = self._stuck + 1 if abs(loss - ln_c) < 0.02 * ln_c else 0
            if self._stuck == cfg.stuck_steps and self.ctx.is_main:
                print(
                    f"warning: the loss has stayed at ln({self.num_classes}) = {ln_c:.2f} for "
                    f"{self._stuck} steps (step {prog.step}): a dead start (the net is not "
                    "learning); try a smaller init std, bias 0.1 instead of 1, or another --lr",
                    file=sys.stderr,
                )
            self._watch_rise(loss)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.3f}", img_s=f"{img_per_s:.0f}", refresh=False)
            if cfg.log_every and prog.step % cfg.log_every == 0:
                self.log.step(
                    epoch=prog.epoch, step=prog.step, loss=loss, lr=self.schedule.lr,
                    img_per_s=img_per_s,
                )  # fmt: skip
            if (
                self._stop
                or self._steps_done()
                or (cfg.ckpt_every and prog.step % cfg.ckpt_every == 0)
            ):
                prog.train_sums = self._reduced_sums(meter)
                self.save()
            if self._stop:
                if bar is not None:
                    bar.close()
                self._interrupted()
            if self._steps_done():
                break
        if bar is not None:
            bar.close()
        if self._steps_done() and prog.batch_in_epoch < len(self.train_loader):
            self._partial_epoch(meter, seen=seen, start=start)
            return None
        return self._end_epoch(meter, seen=seen, start=start)

    def _watch_rise(self, loss: float) -> None:
        """Warn once when the loss rises sharply early (above RISE times the run's first loss
        within its first RISE_STEPS steps): a learning rate too high for this data."""
        if self._first_loss is None:
            self._first_loss = loss
        elif (
            not self._rise_warned
            and self.progress.step <= RISE_STEPS
            and loss > max(RISE * self._first_loss, self._first_loss + 0.5)
            and self.ctx.is_main
        ):
            self._rise_warned = True
            print(
                f"warning: the loss rose from {self._first_loss:.2f} to {loss:.2f} by step "
                f"{self.progress.step} at lr {self.schedule.lr:g}: the learning rate is probably "
                "too high for this data; try a smaller --lr",
                file=sys.stderr,
            )

    def _partial_epoch(self, meter: Meter, seen: int, start: float) -> None:
        """The record of an epoch cut short by max_steps: train numbers of its batches so far
        (kind "partial_epoch"; a resume drops it and writes the whole epoch's record)."""
        prog, n = self.progress, len(self.train_loader)
        seconds = time.perf_counter() - start
        copy = Meter(self.num_classes)
        copy.load_sums(meter.all_sums())
        copy.all_reduce()
        train = copy.result()
        record = {
            "epoch": prog.epoch + 1, "batches": prog.batch_in_epoch, "of": n, "step": prog.step,
            "train_loss": train["loss"], "train_top1_err": train["top1_err"],
            "train_top5_err": train["top5_err"], "lr": self.schedule.lr,
            "img_per_s": seen / max(seconds, 1e-9), "seconds": seconds,
        }  # fmt: skip
        self.log.partial_epoch(**record)
        if self.ctx.is_main:
            print(
                f"epoch {prog.epoch + 1} stopped after {prog.batch_in_epoch} of {n} batches "
                f"(--max-steps {self.config.max_steps}): train loss {train['loss']:.4f} top-1 err "
                f"{train['top1_err']:.4f} lr {self.schedule.lr:g}",
                flush=True,
            )

    def _end_epoch(self, meter: Meter, seen: int, start: float) -> dict[str, Any]:
        """Validate, step the schedule, log the epoch line, checkpoint last (and best)."""
        prog = self.progress
        train_seconds = time.perf_counter() - start
        meter.all_reduce()
        train, val = meter.result(), self.validate()
        lr_used = self.schedule.lr
        metric = (val or train)["top1_err"]
        self.schedule.step(prog.epoch, None if val is None else val["top1_err"])
        record = {
            "epoch": prog.epoch + 1,
            "step": prog.step,
            "train_loss": train["loss"],
            "train_top1_err": train["top1_err"],
            "train_top5_err": train["top5_err"],
            "val_loss": val and val["loss"],
            "val_top1_err": val and val["top1_err"],
            "val_top5_err": val and val["top5_err"],
            "lr": lr_used,
            "img_per_s": seen / max(train_seconds, 1e-9),
            "seconds": time.perf_counter() - start,  # this epoch's (or its resumed part's) time
        }
        self.log.epoch(**record)
        prog.epoch, prog.batch_in_epoch, prog.train_sums = prog.epoch + 1, 0, []
        # best.pt: chosen on val only, and only when the run keeps it (config.keep_best)
        is_best = metric < prog.best_metric and val is not None and self.config.keep_best
        prog.best_metric = min(prog.best_metric, metric)
        self.save(best=is_best)
        if self.ctx.is_main:  # --quiet hides the progress bar only
            val_text = "" if val is None else f" val top-1 err {val['top1_err']:.4f}"
            print(
                f"epoch {prog.epoch}/{self.config.epochs}: train loss {train['loss']:.4f} "
                f"top-1 err {train['top1_err']:.4f}{val_text} lr {lr_used:g}",
                flush=True,
            )
        return record

    def _reduced_sums(self, meter: Meter) -> list[float]:
        """The train sums of all ranks so far (saved by rank 0; others restart from zero)."""
        copy = Meter(self.num_classes)
        copy.load_sums(meter.all_sums())
        copy.all_reduce()
        return copy.all_sums().tolist()

    def _bar(self, done: int):  # -> a tqdm bar, or None when quiet
        if self.config.quiet or not self.ctx.is_main:
            return None
        n, epochs, cap = len(self.train_loader), self.config.epochs, self.config.max_steps
        total = n
        if cap:  # the bar tells the run's real length, not the recipe's epochs
            left = math.ceil((cap - self.progress.step + done) / n)
            epochs = min(epochs, self.progress.epoch + left)
            total = min(n, done + max(cap - self.progress.step, 0))
        return tqdm(
            total=total,
            initial=done,
            desc=f"epoch {self.progress.epoch + 1}/{epochs}",
            unit="batch",
            dynamic_ncols=True,
            leave=False,
        )
