"""jsdlib.common.fit: the one resumable training loop (tiny seeded task with dropout, CPU, seconds); plus the
atomic writes and the GEMM probe it relies on (no shared temporary files, no draws from the global RNG)."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from jsdlib.common.checkpoint import save_state
from jsdlib.common.fit import FitConfig, Task, fit
from jsdlib.common.integrity import DerivedFileWarning
from jsdlib.common.schedule import warmup_decay
from jsdlib.common.seeding import generator, seeded


class Tiny(Task):
    """Least squares through a dropout layer; the selection key is ``keys[epoch]`` when given, else -val MSE."""

    def __init__(self, keys=None, batch_size=8):
        g = generator(123)
        self.X, self.Xv = torch.randn(48, 6, generator=g), torch.randn(16, 6, generator=g)
        w = torch.randn(6, 1, generator=g)
        self.y, self.yv = self.X @ w, self.Xv @ w
        self.model = nn.Sequential(nn.Dropout(0.2), nn.Linear(6, 1))
        self.params = list(self.model.parameters())
        self.keys, self.batch_size = keys, batch_size

    def batches(self, epoch, gen):
        return torch.randperm(len(self.X), generator=gen).split(self.batch_size)

    def loss(self, idx, step, gen):
        noise = 0.01 * torch.randn(len(idx), 1, generator=gen)            # a draw from gen inside the step
        mse = ((self.model(self.X[idx]) - self.y[idx] - noise) ** 2).mean()
        return mse, {"loss": mse, "step": float(step)}

    @torch.no_grad()
    def validate(self, epoch):
        self.model.eval()
        mse = float(((self.model(self.Xv) - self.yv) ** 2).mean())
        key = -mse if self.keys is None else self.keys[epoch]
        return {"val_mse": mse}, key


def run(tmp=None, epochs=4, keys=None, patience=None, stop=None, precision="fp32", ident="tiny", logs=None, **kw):
    with seeded(0):              # as the trainers do: init and dropout seeded, the caller's RNG untouched
        task = Tiny(keys)
        opt = torch.optim.AdamW(task.params, lr=0.05)
        sched = warmup_decay(opt, epochs * 6, 0.1)
        cfg = FitConfig(epochs=epochs, grad_clip=1.0, patience=patience, precision=precision, global_rng=True)
        out = fit(task, opt, sched, generator(7), cfg, ident=ident, run_dir=tmp, progress=False,
                  stop_after_epoch=stop, log=(logs.append if logs is not None else lambda *a: None), **kw)
    return out, task


def numbers(out):
    """What must be identical between runs: history without timings, best, final weights."""
    hist = [{k: v for k, v in r.items() if not k.endswith("_s")} for r in out["history"]]
    return hist, out["best"]["epoch"], out["step"], [p.detach().clone() for p in out["model"].parameters()]


def same(a, b):
    assert a[:3] == b[:3]
    assert all(torch.equal(x, y) for x, y in zip(a[3], b[3]))


def test_a_tiny_task_trains_and_keeps_the_best_epoch():
    out, task = run(epochs=6)
    losses = [r["loss"] for r in out["history"]]
    assert losses[-1] < 0.5 * losses[0]
    best = max(out["history"], key=lambda r: -r["val_mse"])
    assert out["best"] is best and out["best_key"] == [-best["val_mse"]] and out["done"] is False
    assert [r["step"] for r in out["history"]] == [2.5 + 6 * e for e in range(6)]   # mean of steps 0..5, 6..11
    assert out["step"] == 36 and not task.model.training


def test_fit_is_the_plain_loop_bit_for_bit():
    """The same task stepped by hand (the loops of jsdlib 0.1) gives the same weights."""
    out, _ = run(epochs=3)
    with seeded(0):
        task = Tiny()
        opt = torch.optim.AdamW(task.params, lr=0.05)
        sched = warmup_decay(opt, 18, 0.1)
        gen, step, best, best_sd = generator(7), 0, None, None
        for epoch in range(1, 4):
            task.model.train()
            for idx in task.batches(epoch, gen):
                loss, _ = task.loss(idx, step, gen)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(task.params, 1.0)
                opt.step()
                sched.step()
                step += 1
            _, key = task.validate(epoch)
            if best is None or key > best:
                best, best_sd = key, {k: v.clone() for k, v in task.model.state_dict().items()}
    task.model.load_state_dict(best_sd)
    assert all(torch.equal(a, b) for a, b in zip(out["model"].parameters(), task.model.parameters()))


def test_kill_and_resume_equals_an_uninterrupted_run(tmp_path):
    ref, _ = run(tmp_path / "ref")
    part, _ = run(tmp_path / "cut", stop=2)
    assert part["stopped_at"] == 2 and len(part["history"]) == 2
    logs = []                    # the resumed call starts from seed 0 again: the checkpoint's RNG must be used
    again, _ = run(tmp_path / "cut", logs=logs)
    assert any("resumed from" in m and "after epoch 2" in m for m in logs)
    same(numbers(again), numbers(ref))
    nothing, _ = run(tmp_path / "cut")   # a finished run resumes to its end: no more steps, same best weights
    same(numbers(nothing), numbers(ref))


def test_fit_leaves_the_global_rng_alone():
    torch.manual_seed(5)
    before = torch.get_rng_state()
    run(epochs=2)
    assert torch.equal(torch.get_rng_state(), before)


def test_a_checkpoint_of_another_run_is_refused(tmp_path):
    run(tmp_path, stop=1)
    with pytest.raises(ValueError, match="belongs to another run"):
        run(tmp_path, ident="other")


def test_a_corrupt_last_pt_is_discarded_with_a_warning_and_the_run_starts_over(tmp_path):
    ref, _ = run(None)
    run(tmp_path, stop=2)
    last = tmp_path / "last.pt"
    last.write_bytes(last.read_bytes()[:300])
    with pytest.warns(DerivedFileWarning, match=f"discarding unreadable {last}"):
        again, _ = run(tmp_path)
    same(numbers(again), numbers(ref))


def test_a_last_pt_of_the_old_loops_is_discarded_with_a_warning(tmp_path):
    ref, _ = run(None)
    with seeded(0):
        task = Tiny()
    opt = torch.optim.AdamW(task.params)
    save_state(tmp_path / "last.pt", "tiny", task.model, opt, warmup_decay(opt, 24, 0.1), generator(0),
               {"epoch": 2, "history": [], "best": None})                      # bare identity: jsdlib 0.1
    with pytest.warns(DerivedFileWarning, match="written by jsdlib 0.1"):
        again, _ = run(tmp_path)
    same(numbers(again), numbers(ref))


def test_patience_stops_after_that_many_epochs_without_a_better_key():
    keys = {1: 0.5, 2: 0.7, 3: 0.6, 4: 0.7, 5: 0.9, 6: 1.0}   # 4 ties 2: not better
    out, _ = run(epochs=6, keys=keys, patience=2)
    assert [r["epoch"] for r in out["history"]] == [1, 2, 3, 4] and out["done"] and out["best"]["epoch"] == 2
    assert out["bad_epochs"] == 2
    out, _ = run(epochs=6, keys=keys, patience=3)
    assert len(out["history"]) == 6 and not out["done"] and out["best"]["epoch"] == 6


def test_a_non_selectable_epoch_is_never_the_best(tmp_path):
    keys = {1: None, 2: (0.1, 5.0), 3: None, 4: (0.1, 6.0)}   # the unselectable epochs would win on val MSE
    logs = []
    out, _ = run(tmp_path, keys=keys, logs=logs)
    assert out["best"]["epoch"] == 4 and [r["selectable"] for r in out["history"]] == [False, True, False, True]
    assert out["best_key"] == [0.1, 6.0]
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    assert all(torch.equal(best[k], v) for k, v in out["model"].state_dict().items())
    logs = []
    out, _ = run(keys={e: None for e in range(1, 5)}, logs=logs)   # none selectable: the last epoch stays
    assert out["best"]["epoch"] == 4 and out["best_key"] is None
    assert any("no epoch was selectable; keeping the last epoch" in m for m in logs)


def test_patience_counts_from_the_first_selectable_epoch():
    out, _ = run(epochs=5, keys={1: None, 2: None, 3: 1.0, 4: 0.5, 5: 0.4}, patience=2)
    assert len(out["history"]) == 5 and out["done"] and out["best"]["epoch"] == 3


def test_resuming_in_another_precision_is_refused(tmp_path):
    run(tmp_path, stop=1)
    with pytest.raises(ValueError, match="was trained in fp32, this run uses bf16-autocast"):
        run(tmp_path, precision="bf16-autocast")


def test_bf16_autocast_runs_on_cpu():
    out, _ = run(epochs=2, precision="bf16-autocast")
    assert out["precision"] == "bf16-autocast" and all(math.isfinite(r["loss"]) for r in out["history"])


def test_bad_configs_are_one_line_errors():
    with pytest.raises(ValueError, match="precision must be one of"):
        FitConfig(epochs=1, precision="fp8")
    with pytest.raises(ValueError, match="needs a CUDA device"):
        FitConfig(epochs=1, precision="fp16-amp")
    with pytest.raises(ValueError, match="patience must be"):
        FitConfig(epochs=1, patience=0)


def test_the_gemm_probe_leaves_the_global_rng_alone():
    from jsdlib.common.hardware import matmul_tflops

    torch.manual_seed(3)
    before = torch.get_rng_state()
    assert matmul_tflops(n=32, seconds=0.01) > 0
    assert torch.equal(torch.get_rng_state(), before)


def test_atomic_path_writers_of_one_file_do_not_share_a_temporary_file(tmp_path):
    from jsdlib.common.io import atomic_path

    target = tmp_path / "x.bin"
    with atomic_path(target) as a, atomic_path(target) as b:     # two writers of one cache entry at once
        assert a != b
        a.write_bytes(b"first")
        b.write_bytes(b"second")
    assert target.read_bytes() == b"first" and not list(tmp_path.glob("*.tmp"))
    with pytest.raises(RuntimeError):
        with atomic_path(target) as c:
            c.write_bytes(b"half")
            raise RuntimeError("killed mid-write")
    assert target.read_bytes() == b"first" and not list(tmp_path.glob("*.tmp"))
