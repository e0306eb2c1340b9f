"""The training loop: it learns, stops on NaN, warns on a dead start, resumes exactly."""

import math

import pytest
import torch
from torch import nn

from alexnet.train.config import make_config
from alexnet.train.loop import NonFiniteLossError, Trainer
from alexnet.train.metrics_log import read_metrics
from alexnet.train.optim import LRSchedule
from alexnet.train.run import train


class Tiny(nn.Module):
    """A small net with dropout, carrying the attributes every zoo model has."""

    model_name, model_options, num_classes, input_size, in_chans = "tiny", {}, 4, 6, 3

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(108, 64), nn.ReLU(), nn.Dropout(0.5), nn.Linear(64, 4)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class MemoryLoader:
    """Seeded shuffled batches: a pure function of (seed, epoch, index), like the real loader."""

    def __init__(self, x, y, batch_size, seed=0):
        self.x, self.y, self.batch_size, self.seed = x, y, batch_size, seed

    def __len__(self):
        return len(self.x) // self.batch_size

    def epoch(self, epoch, start_batch=0):
        order = torch.randperm(len(self.x), generator=torch.Generator().manual_seed(epoch))
        for b in range(start_batch, len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            yield self.x[idx], self.y[idx]


def _data(n=32):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 3, 6, 6, generator=g), torch.randint(0, 4, (n,), generator=g)


def _trainer(tmp_path, loader, model=None, **cfg):
    torch.manual_seed(0)
    config = make_config(
        {"data": "mem", "epochs": 3, "batch_size": 8, "lr": 0.05, "schedule": "constant",
         "quiet": True, "log_every": 1, **cfg}
    )  # fmt: skip
    return Trainer(
        config, model or Tiny(), loader, None, preprocess={}, run_dir=tmp_path,
        device=torch.device("cpu"), precision="fp32",
    )  # fmt: skip


def test_overfits_a_tiny_batch(tmp_path):
    x, y = _data(8)
    model = Tiny()
    model.net[3].p = 0.0
    trainer = _trainer(tmp_path, MemoryLoader(x, y, 8), model=model, epochs=150, lr=0.1)
    record = trainer.fit()
    assert record["train_loss"] < 0.02 and record["train_top1_err"] == 0.0
    first = read_metrics(tmp_path)[0]
    assert first["kind"] == "step" and abs(first["loss"] - math.log(4)) < 0.5


def test_nan_loss_stops_naming_the_step_and_keeps_last_checkpoint(tmp_path):
    x, y = _data(32)
    x[20:] = float("nan")  # poisoned samples: some batch of epoch 2 will contain one
    loader = MemoryLoader(x, y, 8)
    clean = MemoryLoader(x[:20], y[:20], 8)
    trainer = _trainer(tmp_path, clean, epochs=1)
    trainer.fit()
    saved = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    trainer.train_loader = loader
    trainer.config.epochs = 2
    with pytest.raises(NonFiniteLossError, match=r"at step \d+ \(epoch 2\)") as err:
        trainer.fit()
    assert "last.pt" in str(err.value)
    after = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert after["step"] == saved["step"] == 2
    for key, value in saved["model"].items():
        assert torch.equal(after["model"][key], value)


def test_dead_start_warning(tmp_path, capsys):
    x, y = _data(16)
    model = Tiny()
    for p in model.parameters():
        nn.init.zeros_(p)  # outputs all zero: loss exactly ln(4), gradients vanish
    _trainer(tmp_path, MemoryLoader(x, y, 8), model=model, epochs=3, stuck_steps=5, lr=1e-4).fit()
    assert "stayed at ln(4)" in capsys.readouterr().err


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_resume_mid_epoch_matches_uninterrupted_run(tmp_path, schedule):
    x, y = _data(40)
    loader = MemoryLoader(x, y, 8)  # 5 batches per epoch
    full = _trainer(tmp_path / "a", loader, epochs=3, schedule=schedule)
    full.fit()
    part = _trainer(tmp_path / "b", loader, epochs=3, max_steps=7, ckpt_every=3, schedule=schedule)
    part.fit()
    ckpt = torch.load(tmp_path / "b" / "checkpoints" / "last.pt", weights_only=True)
    assert (ckpt["epoch"], ckpt["step"], ckpt["batch_in_epoch"]) == (1, 7, 2)
    torch.manual_seed(123)  # the resumed process starts from another RNG state
    resumed = _trainer(tmp_path / "b", loader, epochs=3, schedule=schedule)
    resumed.load_state(ckpt)
    resumed.fit(resume_step=7)
    resumed_state = resumed.model.state_dict()
    for name, value in full.model.state_dict().items():
        assert torch.equal(value, resumed_state[name]), name
    epochs_a = [r for r in read_metrics(tmp_path / "a") if r["kind"] == "epoch"]
    epochs_b = [r for r in read_metrics(tmp_path / "b") if r["kind"] == "epoch"]
    for ra, rb in zip(epochs_a, epochs_b, strict=True):
        assert ra["train_loss"] == rb["train_loss"] and ra["step"] == rb["step"]
    steps_b = [r["step"] for r in read_metrics(tmp_path / "b") if r["kind"] == "step"]
    assert steps_b == list(range(1, 16))  # lines after the checkpoint were not duplicated


def test_a_stop_condition_ends_fit_and_a_resume_continues_exactly(tmp_path):
    """`stop(records)` after every epoch: it sees the run's epoch records (earlier invocations'
    too, as metrics.jsonl holds them); stopping leaves last.pt at that epoch, and the resumed
    run ends bit-identical to one that never stopped."""
    x, y = _data(40)
    loader = MemoryLoader(x, y, 8)
    full = _trainer(tmp_path / "a", loader, epochs=4)
    full.fit()
    seen: list[list[dict]] = []

    def stop_at_two(records):
        seen.append(list(records))
        return len(records) == 2

    part = _trainer(tmp_path / "b", loader, epochs=4)
    last = part.fit(stop=stop_at_two)
    assert [len(r) for r in seen] == [1, 2] and last["epoch"] == 2
    ckpt = torch.load(tmp_path / "b" / "checkpoints" / "last.pt", weights_only=True)
    assert (ckpt["epoch"], ckpt["step"], ckpt["batch_in_epoch"]) == (2, 10, 0)
    torch.manual_seed(123)  # the resumed process starts from another RNG state
    resumed = _trainer(tmp_path / "b", loader, epochs=4)
    resumed.load_state(ckpt)
    resumed.fit(resume_step=10, stop=lambda records: seen.append(list(records)) or False)
    for name, value in full.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name
    on_disk = [r for r in read_metrics(tmp_path / "b") if r["kind"] == "epoch"]
    assert [len(r) for r in seen] == [1, 2, 3, 4] and seen[-1] == on_disk
    assert [r["train_loss"] for r in on_disk] == [
        r["train_loss"] for r in read_metrics(tmp_path / "a") if r["kind"] == "epoch"
    ]


def test_train_refuses_what_is_no_config():
    with pytest.raises(TypeError, match=r"resume\(run_dir"):
        train(None)


def test_lr_given_on_resume_replaces_the_saved_one(tmp_path):
    x, y = _data(16)
    first = _trainer(tmp_path, MemoryLoader(x, y, 8), epochs=1)
    first.fit()
    ckpt = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    again = _trainer(tmp_path, MemoryLoader(x, y, 8), epochs=2)
    again.load_state(ckpt, lr=0.003)
    assert again.optimizer.param_groups[0]["lr"] == 0.003 and again.schedule.lr == 0.003
    assert again.progress.epoch == 1 and again.progress.step == 2


def _schedule(**cfg):
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    return opt, LRSchedule(opt, make_config({"data": "d", "lr": 0.01, **cfg}))


def test_plateau_divides_by_ten_after_patience_three_times_at_most():
    opt, s = _schedule(schedule="plateau", patience=2)
    errors = [0.5, 0.4, 0.45, 0.41, 0.42, 0.3, 0.31, 0.32] + [0.9] * 10
    lrs = [s.step(e, err) for e, err in enumerate(errors)]
    assert lrs[:4] == [0.01, 0.01, 0.01, pytest.approx(0.001)]
    assert lrs[7] == pytest.approx(1e-4)
    assert min(lrs) == pytest.approx(1e-5) and opt.param_groups[0]["lr"] == lrs[-1]
    s.set_lr(0.05)  # the manual change on resume
    assert opt.param_groups[0]["lr"] == 0.05


def test_step_schedule_and_state_round_trip():
    _, s = _schedule(schedule="step", step_epochs=2)
    assert [s.step(e, None) for e in range(5)] == pytest.approx([0.01, 1e-3, 1e-3, 1e-4, 1e-4])
    opt, other = _schedule(schedule="step", step_epochs=2)
    other.load_state_dict(s.state_dict())
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-4)
    _, plateau = _schedule(schedule="plateau")
    with pytest.raises(ValueError, match="schedule"):
        plateau.load_state_dict(s.state_dict())


def test_cosine_follows_half_a_cosine_per_step_and_survives_a_state_round_trip():
    opt, s = _schedule(schedule="cosine", lr=0.02)
    total = 40
    for step in (0, 10, 20, 33, 40):
        s.at_step(step, total)
        want = 0.5 * 0.02 * (1 + math.cos(math.pi * step / total))  # float64 formula
        assert opt.param_groups[0]["lr"] == pytest.approx(want, rel=1e-12, abs=1e-15)
    assert s.step(0, None) == pytest.approx(0.0, abs=1e-15)  # epoch ends leave it alone
    opt2, other = _schedule(schedule="cosine", lr=0.5)
    other.load_state_dict(s.state_dict())
    other.at_step(20, total)
    assert opt2.param_groups[0]["lr"] == pytest.approx(0.01)  # the saved base, not the config's
    other.set_lr(0.004)  # a manual lr on resume restarts the curve's height from there
    other.at_step(20, total)
    assert opt2.param_groups[0]["lr"] == pytest.approx(0.002)


def test_cosine_trainer_ends_its_last_step_near_zero(tmp_path):
    x, y = _data(40)
    trainer = _trainer(tmp_path, MemoryLoader(x, y, 8), epochs=2, schedule="cosine", lr=0.1)
    trainer.fit()
    lrs = [r["lr"] for r in read_metrics(tmp_path) if r["kind"] == "step"]
    assert lrs[0] == pytest.approx(0.1) and lrs == sorted(lrs, reverse=True)
    assert lrs[-1] == pytest.approx(0.5 * 0.1 * (1 + math.cos(math.pi * 9 / 10)))
