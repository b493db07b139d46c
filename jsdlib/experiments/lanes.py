"""``reproduce --workers N``: the job's training steps in N parallel lanes, each a process with its share of the cores.

Why: a 2-core laptop runs two single-thread trainings ~1.2-1.4x faster than one after the other with 2 threads
(small matrices and Python overheads do not use two cores well; measured in docs/decisions.md, "make run within
the hour"). How:

- :func:`plan` deals the steps to lanes, longest expected first, each to the lane with the least expected work
  (the committed run's step times, ``EXPECTED_SECONDS``);
- each lane is a spawned process that runs :func:`jsdlib.experiments.reproduce.run` on its steps with
  ``threads`` torch threads and writes their step files as usual (``OUT/steps``), its log in ``OUT/logs``;
- a lane that finishes early helps with the L1 sweep from its end (:func:`jsdlib.experiments.reproduce.help_sweep`),
  and with ``jsd_fidelity``'s units (:func:`jsdlib.experiments.reproduce.help_fidelity`); when such a step is
  pending and fewer steps than lanes, the spare lanes start as helpers;
- timed steps (``search``, ``cmc_speed``) never run in a lane: they measure speed, and the parent runs them alone
  afterwards, with the report, reusing every lane's step file.

Every training in a lane runs with the same thread count wherever it runs, so which lane trains a run changes
no number; a second run reuses every finished step and every finished training.
"""
from __future__ import annotations

import dataclasses
import multiprocessing as mp
import time
from pathlib import Path
from typing import Callable, Sequence

import torch
from tqdm.auto import tqdm

from jsdlib.common.integrity import read_derived_json
from jsdlib.common.runlock import DONE, finished, mark_finished, run_lock

TIMED = frozenset({"search", "cmc_speed"})
HELPABLE = frozenset({"jsd_sweep", "jsd_fidelity", "cmc_fidelity"})    # steps another lane can help with (reproduce.HELPERS)


def plain_json(o):
    """JSON form of a step argument for a fingerprint or a unit's identity: a config dataclass by its identity or
    fields, a function by its qualified name, anything else by ``str``."""
    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        return o.identity() if hasattr(o, "identity") else dataclasses.asdict(o)
    if callable(o):
        return f"{getattr(o, '__module__', '')}.{getattr(o, '__qualname__', repr(o))}"
    return str(o)


def share_units(todo: Sequence, unit_dir: Callable, train_unit: Callable, helper: bool) -> int:
    """Train the pending units of a step two lanes share: its owner from the start (waiting for a unit another
    lane holds), a helper from the end (skipping finished units, as a resumed job finds them at the end, and
    stopping at the first unit another lane holds, where it meets the owner). ``unit_dir(unit)`` gives the unit's
    lock folder and the identity its finished-marker must carry (what the step trains), so a changed step retrains
    instead of trusting an old marker. Returns how many units this lane trained."""
    done = 0
    for unit in (reversed(todo) if helper else todo):
        d, ident = unit_dir(unit)
        if finished(d, ident):
            continue
        with run_lock(d, blocking=not helper) as free:
            if not free:
                break
            if not finished(d, ident):
                train_unit(unit)
                mark_finished(d, ident)
                done += 1
    return done


def plan(names: Sequence[str], workers: int, cost: dict[str, float]) -> list[list[str]]:
    """``names`` dealt to ``workers`` lanes: longest expected first, each to the least-loaded lane (LPT); in each
    lane the steps run longest first, except that a step other lanes can help with (the L1 sweep) runs last."""
    lanes: list[list[str]] = [[] for _ in range(max(1, workers))]
    load = [0.0] * len(lanes)
    for n in sorted(names, key=lambda n: -cost.get(n, 60.0)):
        i = load.index(min(load))
        lanes[i].append(n)
        load[i] += cost.get(n, 60.0)
    for lane in lanes:   # the sweep last in its lane: a lane that finishes early can then help with it
        lane.sort(key=lambda n: n in HELPABLE)
    return [lane for lane in lanes if lane]


def _lane(i: int, names: list[str], kw: dict, threads: int, log_path: str) -> None:
    """A lane's process: its steps through ``reproduce.run`` (no report), then help with the sweep."""
    from jsdlib.common.hardware import keep_freed_memory
    from jsdlib.experiments import reproduce

    torch.set_num_threads(threads)
    keep_freed_memory()
    with open(log_path, "a", buffering=1) as f:
        def log(msg):
            line = f"[lane {i}] {msg}"
            print(line, flush=True)
            f.write(line + "\n")

        helps = kw.pop("help", ())
        steps = [reproduce.cpu_steps([n])[0] for n in names]        # in the lane's order, not the job's
        reproduce.run(steps=steps, progress=False, log=log, report=False, workers=1, **kw)
        ctx = reproduce.Context(Path(kw["out"]), "cpu", tuple(kw["seeds"]), False, log,
                                {"standin": kw.get("standin")})
        for n in helps:
            helper = getattr(reproduce, reproduce.HELPERS[n])
            log(f"helped {n} with {helper(ctx, reproduce.cpu_steps([n])[0])} trainings")
        log("done")


def run_lanes(names: Sequence[str], workers: int, threads: int, cost: dict[str, float], out, log: Callable = print,
              progress: Callable[[], None] | None = None, **kw) -> list[list[str]]:
    """Run the untimed steps ``names`` in ``workers`` lanes of ``threads`` threads; returns the lanes. Raises if a
    lane fails (its log is named). ``progress()`` is called every few seconds while the lanes run."""
    names = [n for n in names if n not in TIMED]
    lanes = plan(names, workers, cost)
    if any(n in HELPABLE for n in names):     # spare lanes start as helpers
        lanes += [[] for _ in range(workers - len(lanes))]
    logs = Path(out) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    ctx = mp.get_context("spawn")
    procs = []
    for i, lane in enumerate(lanes):
        log(f"[reproduce] lane {i} ({threads} thread{'s' if threads > 1 else ''}): "
            f"{', '.join(lane) or 'helper'}")
        p = ctx.Process(target=_lane, args=(i, lane, dict(kw, out=str(out)), threads, str(logs / f"lane{i}.log")),
                        name=f"reproduce-lane{i}")
        p.start()
        procs.append(p)
    try:
        while any(p.is_alive() for p in procs):
            time.sleep(5)
            if progress is not None:
                progress()
    except BaseException:
        for p in procs:
            p.terminate()
        raise
    failed = [(i, p.exitcode) for i, p in enumerate(procs) if p.exitcode != 0]
    if failed:
        raise RuntimeError("reproduce: " + "; ".join(f"lane {i} failed (exit code {c}; log {logs / f'lane{i}.log'})"
                                                     for i, c in failed))
    return lanes


def saved_step(out, step, seeds) -> dict | None:
    """``OUT/steps/<name>.json`` of ``step`` when it can be reused (readable, with a result, the same digest),
    else ``None``: the one test of reuse, for ``reproduce.run`` and the lanes."""
    saved = read_derived_json(Path(out) / "steps" / f"{step.name}.json")
    if saved is None or not isinstance(saved.get("_step"), dict) or "result" not in saved:
        return None
    return saved if saved["_step"].get("digest") == step.digest(seeds) else None


def _pending(out: Path, steps: Sequence, seeds) -> list[str]:
    """The steps whose step file is missing or stale (another digest)."""
    return [s.name for s in steps if saved_step(out, s, seeds) is None]


def finished_trainings(out, step: str) -> int:
    """How many trainings of ``step`` have finished: the markers ``fit`` leaves in ``OUT/runs/<step>/``."""
    root = Path(out) / "runs" / step
    return sum(1 for _ in root.rglob(DONE)) if root.is_dir() else 0


def run_pending_in_lanes(out: Path, steps: Sequence, seeds, standin, workers: int, expected: dict, trainings: dict,
                         progress: bool, log) -> None:
    """``reproduce.run``'s lanes: its pending untimed steps in ``workers`` lanes (:func:`run_lanes`), with the job's
    bar weighted by the expected step times ``expected`` (seconds per step) and one bar per step over its
    ``trainings[step]`` trainings (each with its own ETA)."""
    names = [n for n in _pending(out, steps, seeds) if n not in TIMED]
    if not names:   # one pending step still goes to a lane: its trainings then get a lane's threads, as in a full run
        return
    cost = {n: expected.get(n, 60.0) for n in names}
    bar = tqdm(total=round(sum(cost.values())), unit="s", disable=not progress, desc="reproduce [lanes]",
               bar_format="{desc} {percentage:3.0f}% of the expected cost |{bar}| [{elapsed}<{remaining}]")
    step_bars = {n: tqdm(total=trainings[n], unit="training", desc=f"  {n}", disable=not progress, position=i + 1,
                         leave=True) for i, n in enumerate(x for x in names if trainings.get(x))}
    seen: set[str] = set()

    def tick():
        left = set(_pending(out, [s for s in steps if s.name in names], seeds))
        for n in set(names) - left - seen:
            seen.add(n)
            bar.update(round(cost[n]))
        for n, b in step_bars.items():   # each step's bar: its finished trainings (fit's markers), with an ETA
            b.update(min(finished_trainings(out, n), b.total) - b.n)

    threads = max(1, torch.get_num_threads() // workers)
    try:
        run_lanes(names, workers, threads, cost, out, log=log if not progress else tqdm.write, progress=tick,
                  preset="cpu", seeds=list(seeds), standin=standin, help=[n for n in names if n in HELPABLE])
    finally:
        tick()
        for b in (*step_bars.values(), bar):
            b.close()


__all__ = ["plan", "run_lanes", "run_pending_in_lanes", "saved_step", "finished_trainings", "TIMED"]
