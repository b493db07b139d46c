"""Bad inputs and faults never give a silent wrong answer (issue 17).

One test per case found wrong or crashing against 2e0fcdc: path confinement and duplicate images in Karpathy
JSON, index provenance, a damaged Milvus Lite store, corrupted / truncated cached features, a corrupted
checkpoint, a paper preset without its projection, a truncated step file, ``--batch-size 0``, empty corpora,
non-finite hybrid weights; output paths checked before any work; every subcommand's bad argument is one line
with exit code 2; and ``jsdlib reproduce`` killed with SIGKILL during a step resumes to the same result.
Imports of new names stay inside the tests so that each test fails on its own on older code.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from jsdlib.cli.main import main

ROOT = Path(__file__).resolve().parent.parent
FIX = Path(__file__).resolve().parent / "fixtures"
FLICKR = FIX / "flickr30k"


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("JSDLIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("JSDLIB_DEBUG", raising=False)


@pytest.fixture(scope="module")
def tiny_standin(tmp_path_factory):
    """A random-init tiny stand-in checkpoint (32-px images, one layer): seconds to encode the Flickr fixture."""
    from jsdlib.vlp.standin import save_standin
    from jsdlib.vlp.standin import build_standin

    torch.manual_seed(0)
    arch = {"image_size": 32, "patch_size": 16, "width": 32, "layers": 1, "embed_dim": 16}
    model, _, _ = build_standin(arch)
    ck = tmp_path_factory.mktemp("tiny") / "tiny.safetensors"
    save_standin(model, ck, arch, {})
    return ck


def one_line_error(capsys) -> str:
    """The CLI's stderr, asserted to be one line starting with ``jsdlib: ``; stdout must be empty."""
    cap = capsys.readouterr()
    err = cap.err.strip("\n")
    assert err.startswith("jsdlib: ") and "\n" not in err, cap.err
    assert "Traceback" not in cap.err
    return err


def karpathy(tmp_path, entries) -> tuple[Path, Path]:
    """A Karpathy JSON over copies of the Flickr fixture's test image; ``entries``: (filename, filepath) pairs."""
    images = tmp_path / "images"
    images.mkdir(exist_ok=True)
    src = next((FLICKR / "flickr30k-images").glob("*.jpg"))
    shutil.copy(src, images / "a.jpg")
    shutil.copy(src, images / "b.jpg")
    out = []
    for k, (name, folder) in enumerate(entries):
        e = {"filename": name, "split": "test", "imgid": k, "sentids": [10 * k, 10 * k + 1],
             "sentences": [{"raw": f"picture {k} caption {j}", "imgid": k, "sentid": 10 * k + j} for j in (0, 1)]}
        if folder is not None:
            e["filepath"] = folder
        out.append(e)
    js = tmp_path / "dataset_x.json"
    js.write_text(json.dumps({"dataset": "x", "images": out}))
    return js, images


def eval_args(js, images, ck, *more):
    return ["eval", "dense", "--dataset", str(js), "--images", str(images), "--split", "test", "--pretrained",
            str(ck), "--quiet", "--threads", "1", *more]


# ------------------------------------------------------------------------------------------------ 1, 2
@pytest.mark.parametrize("name, folder", [("../outside/secret.png", None), ("secret.png", "../outside"),
                                          ("a/../../outside/secret.png", None), ("ABS", None)])
def test_image_paths_outside_the_image_folder_are_refused(tmp_path, capsys, tiny_standin, name, folder):
    (tmp_path / "outside").mkdir()
    shutil.copy(next((FLICKR / "flickr30k-images").glob("*.jpg")), tmp_path / "outside" / "secret.png")
    if name == "ABS":
        name = str(tmp_path / "outside" / "secret.png")
    js, images = karpathy(tmp_path, [("a.jpg", None), (name, folder)])
    assert main(eval_args(js, images, tiny_standin)) == 2
    err = one_line_error(capsys)
    assert str(js) in err and "imgid=1" in err and ("leaves the image folder" in err or "absolute" in err)


def test_symlink_out_of_the_image_folder_is_refused(tmp_path):
    from jsdlib.data.errors import DataFormatError
    from jsdlib.data.karpathy import load_karpathy

    js, images = karpathy(tmp_path, [("a.jpg", None), ("link.jpg", None)])
    (tmp_path / "secret.jpg").write_bytes((images / "a.jpg").read_bytes())
    (images / "link.jpg").symlink_to(tmp_path / "secret.jpg")
    with pytest.raises(DataFormatError, match="outside the image folder"):
        load_karpathy(js, images, "test")


def test_two_entries_on_one_image_file_are_refused(tmp_path, capsys, tiny_standin):
    js, images = karpathy(tmp_path, [("a.jpg", None), ("b.jpg", None), ("./a.jpg", "")])
    assert main(eval_args(js, images, tiny_standin)) == 2
    err = one_line_error(capsys)
    assert "point to the same image file a.jpg" in err and "imgid=0" in err and "imgid=2" in err


def test_the_bundled_and_fixture_sets_still_load():
    from jsdlib.data.karpathy import load_coco, load_emoji, load_flickr30k

    assert sum(len(load_emoji(s)) for s in ("train", "val", "test")) > 3000
    assert len(load_flickr30k(FLICKR, "test")) == 1 and len(load_coco(FIX / "coco", "test")) >= 1


# ------------------------------------------------------------------------------------------------ 3
def test_index_search_refuses_another_split(tmp_path, capsys):
    ix = tmp_path / "ix"
    assert main(["index", "build", "--path", str(ix), "--split", "val", "--threads", "1"]) == 0
    meta = json.loads((ix / "meta.json").read_text())["provenance"]
    assert meta["split"] == "val" and meta["backend"] == "exact" and meta["n_docs"] == 500 and meta["model"]
    capsys.readouterr()
    assert main(["index", "search", "--path", str(ix), "--split", "test", "--query", "cat face",
                 "--threads", "1"]) == 2
    err = one_line_error(capsys)
    assert str(ix) in err and "split: index 'val', asked 'test'" in err
    assert main(["index", "search", "--path", str(ix), "--split", "val", "--query", "cat face", "--k", "2",
                 "--threads", "1"]) == 0
    assert "  1  image" in capsys.readouterr().out


def test_index_without_provenance_or_of_another_model_is_refused(tmp_path):
    from jsdlib.index.types import IndexMismatchError, Vectors
    from jsdlib.index.registry import build_backend, open_backend

    docs = Vectors(dense=np.eye(4, dtype=np.float32))
    build_backend("exact", docs, tmp_path / "old")                      # no provenance recorded
    with pytest.raises(IndexMismatchError, match="does not record what it was built from"):
        open_backend("exact", tmp_path / "old", expect={"split": "test"})
    build_backend("exact", docs, tmp_path / "new", provenance={"split": "test", "model": "aaa"})
    with pytest.raises(IndexMismatchError, match="model: index 'aaa', asked 'bbb'.*n_docs: index 4, asked 5"):
        open_backend("exact", tmp_path / "new", expect={"split": "test", "model": "bbb", "n_docs": 5})
    assert open_backend("exact", tmp_path / "new", expect={"split": "test", "model": "aaa", "n_docs": 4}).n_docs == 4


# ------------------------------------------------------------------------------------------------ 4
def test_milvus_store_with_a_damaged_manifest_is_refused(tmp_path):
    from jsdlib.index.milvus import MilvusBackend
    from jsdlib.index.types import Vectors

    rng = np.random.default_rng(0)
    D = rng.standard_normal((30, 8)).astype(np.float32)
    db = tmp_path / "m.db"
    MilvusBackend.build(Vectors(dense=D / np.linalg.norm(D, axis=1, keepdims=True)), str(db)).close()
    manifests = list(db.rglob("manifest.json")) if db.is_dir() else []
    if not manifests:
        pytest.skip("this milvus-lite keeps no manifest.json (not milvus-lite 3)")
    text = manifests[0].read_text()
    manifests[0].write_text(text[:len(text) // 2])                      # truncated, as by a crash or a full disk
    with pytest.raises(ValueError, match=r"holds 0 rows but was built with 30 documents"):
        MilvusBackend.open(str(db))


# ------------------------------------------------------------------------------------------------ 5, 8
def _feature_file(tmp_path) -> Path:
    files = list((tmp_path / "cache" / "features").glob("*.safetensors"))
    assert len(files) == 1, files
    return files[0]


def _zero_tensors(path: Path) -> None:
    """Overwrite every tensor byte with zeros, header intact (the file still parses)."""
    raw = bytearray(path.read_bytes())
    n = int.from_bytes(raw[:8], "little")
    raw[8 + n:] = bytes(len(raw) - 8 - n)
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("damage", ["zeroed", "truncated"])
def test_damaged_cached_features_are_recomputed(tmp_path, tiny_standin, damage):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    args = eval_args(FLICKR / "dataset_flickr30k.json", FLICKR / "flickr30k-images", tiny_standin)
    assert main(args + ["--json", str(a)]) == 0
    f = _feature_file(tmp_path)
    if damage == "zeroed":
        _zero_tensors(f)
    else:
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.warns(UserWarning, match=f"discarding unreadable {f}"):
        assert main(args + ["--json", str(b)]) == 0
    ra, rb = json.loads(a.read_text()), json.loads(b.read_text())
    assert ra["t2i"] == rb["t2i"] and ra["i2t"] == rb["i2t"] and ra["t2i"]["R@1"] > 0
    from jsdlib.vlp.features import load_features

    assert load_features(_feature_file(tmp_path)).text.abs().sum() > 0  # the cache holds real features again


# ------------------------------------------------------------------------------------------------ 6
def _flip(path: Path, n: int = 4096, where: float = 0.5) -> None:
    raw = bytearray(path.read_bytes())
    s = int(len(raw) * where)
    raw[s:s + n] = bytes(x ^ 0xFF for x in raw[s:s + n])
    path.write_bytes(bytes(raw))


def test_corrupted_jsd_checkpoint_is_refused(tmp_path, capsys):
    from jsdlib.jsd.io import load_jsd, save_jsd

    model, meta = load_jsd()
    ck = save_jsd(model, tmp_path / "jsd.safetensors", meta)
    _flip(ck)
    assert main(["terms", "--image", "dog face", "--model", str(ck), "--threads", "1"]) == 2
    err = one_line_error(capsys)
    assert str(ck) in err and "content digest" in err


def test_corrupted_checkpoints_of_every_kind_are_refused(tmp_path, tiny_standin):
    from jsdlib.cmc.model import CMC
    from jsdlib.cmc.checkpoint import load_cmc, save_cmc
    from jsdlib.common.integrity import IntegrityError
    from jsdlib.vlp.standin import load_standin

    ck = tmp_path / "standin.safetensors"
    ck.write_bytes(tiny_standin.read_bytes())
    _flip(ck, 256, 0.8)
    with pytest.raises(IntegrityError, match=f"stand-in checkpoint {ck}"):
        load_standin(ck)
    torch.manual_seed(0)
    cm = save_cmc(CMC(16, "frozen"), tmp_path / "cmc.safetensors")
    assert load_cmc(cm)[0].head.dim == 16
    _flip(cm, 64, 0.9)
    with pytest.raises(IntegrityError, match="CMC checkpoint"):
        load_cmc(cm)


def test_non_finite_weights_are_refused(tmp_path):
    from safetensors.torch import save_file

    from jsdlib.common.integrity import IntegrityError, load_safetensors

    save_file({"w": torch.tensor([1.0, float("nan")])}, str(tmp_path / "w.safetensors"))  # no digest: finite check
    with pytest.raises(IntegrityError, match="tensor 'w' holds NaN or infinite values"):
        load_safetensors(tmp_path / "w.safetensors", "checkpoint")


def test_committed_assets_match_their_recorded_digests(tmp_path, monkeypatch):
    from safetensors import safe_open

    from jsdlib.common import integrity

    recorded = json.loads(integrity.ASSET_DIGESTS.read_text())
    assets = sorted(p.name for p in integrity.ASSETS.glob("*.safetensors"))
    assert sorted(recorded) == assets
    for name in assets:
        with safe_open(str(integrity.ASSETS / name), framework="pt") as fh:
            got = integrity.content_digest({k: fh.get_tensor(k) for k in fh.keys()}, fh.metadata())
        assert got == recorded[name], name
    # a flipped byte in an asset without an embedded digest is caught through the recorded one
    fake = tmp_path / "assets"
    fake.mkdir()
    shutil.copy(integrity.ASSETS / "cmc_wordnet.safetensors", fake)
    (fake / "digests.json").write_text(json.dumps(recorded))
    monkeypatch.setattr(integrity, "ASSETS", fake)
    monkeypatch.setattr(integrity, "ASSET_DIGESTS", fake / "digests.json")
    integrity.load_safetensors(fake / "cmc_wordnet.safetensors")
    _flip(fake / "cmc_wordnet.safetensors", 2, 0.7)
    with pytest.raises(integrity.IntegrityError, match="does not match its recorded content digest"):
        integrity.load_safetensors(fake / "cmc_wordnet.safetensors")


# ------------------------------------------------------------------------------------------------ 7
def _paper_data(tmp_path) -> tuple[Path, Path]:
    """Placeholder files with the names blip-flickr needs: nothing may read them before the inputs are checked."""
    d = tmp_path / "data"
    d.mkdir()
    for name in ("dataset_flickr30k.json", "text_embs_before_proj_blip.parquet", "img_embs_before_proj_blip.parquet"):
        (d / name).write_text("placeholder")
    E = tmp_path / "E.pt"
    torch.save(torch.zeros(4, 768), E)
    return d, E


def test_paper_preset_without_projection_refuses_to_run(tmp_path, capsys):
    d, E = _paper_data(tmp_path)
    out = tmp_path / "o"
    rc = main(["reproduce", "--preset", "blip-flickr", "--data", str(d), "--word-embeddings", str(E),
               "--out", str(out), "--quiet"])
    assert rc == 2
    err = one_line_error(capsys)
    assert "--projection" in err and "text_proj" in err and "--random-projection" in err
    assert not out.exists()
    assert main(["reproduce", "--preset", "blip-flickr", "--data", str(d), "--projection", str(E),
                 "--out", str(out), "--quiet"]) == 2
    assert "--word-embeddings" in one_line_error(capsys) and not out.exists()


def test_random_projection_is_explicit_and_recorded(tmp_path, monkeypatch):
    from jsdlib.experiments import jsd_compare as experiments
    from jsdlib.experiments import reproduce

    d = tmp_path / "data"
    d.mkdir()
    src = FIX / "released_features"
    shutil.copy(src / "dataset_meta.json", d / "dataset_flickr30k.json")
    for name in ("text_embs_before_proj_blip.parquet", "img_embs_before_proj_blip.parquet"):
        shutil.copy(src / name, d / name)
    E = tmp_path / "E.pt"
    torch.save(torch.zeros(4, 768), E)
    (step,) = reproduce.paper_steps("blip-flickr", d, None, E, random_projection=True)
    assert step.config["projection"] == "random(seed=0)"
    seen = {}
    monkeypatch.setattr(experiments, "compare", lambda fs, cfg, seeds, **kw: seen.update(fs=fs) or {"methods": {}})
    ctx = reproduce.Context(tmp_path / "o", "blip-flickr", (0,), False, lambda *a: None)
    res = step(ctx)          # a step runs its function with the resolved arguments
    assert res["projection"] == "random(seed=0)" and seen["fs"].train.meta["projection"].startswith("random")


# ------------------------------------------------------------------------------------------------ 9
def test_truncated_step_file_is_recomputed(tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["reproduce", "--only", "dense", "--out", str(out), "--quiet", "--threads", "1"]) == 0
    first = json.loads((out / "results.json").read_text())["results"]["dense"]
    step = out / "steps" / "dense.json"
    step.write_text(step.read_text()[:100])
    with pytest.warns(UserWarning, match=f"discarding unreadable {step}"):
        assert main(["reproduce", "--only", "dense", "--out", str(out), "--quiet", "--threads", "1"]) == 0
    again = json.loads((out / "results.json").read_text())["results"]["dense"]
    assert again["t2i"] == first["t2i"] and json.loads(step.read_text())["result"]["t2i"] == first["t2i"]


# ------------------------------------------------------------------------------------------------ 10
def test_batch_size_zero_is_a_usage_error(tmp_path, capsys):
    assert main(["eval", "dense", "--batch-size", "0", "--json", str(tmp_path / "a.json")]) == 2
    err = one_line_error(capsys)
    assert "--batch-size" in err and "'0' is not a positive integer" in err
    assert not (tmp_path / "cache").exists()


# ------------------------------------------------------------------------------------------------ 11-13
@pytest.mark.parametrize("name", ["exact", "brute", "faiss", "seismic"])
def test_empty_corpus_is_refused(name):
    from jsdlib.index.types import Vectors
    from jsdlib.index.registry import build_backend

    docs = Vectors(np.zeros((0, 8), np.float32), sp.csr_matrix((0, 30), dtype=np.float32))
    with pytest.raises(ValueError, match=f"{name}: the corpus is empty"):
        build_backend(name, docs)


@pytest.mark.parametrize("bad", [{"w1": float("nan")}, {"w2": float("inf")}, {"tau": float("nan")}])
def test_non_finite_hybrid_weights_are_refused(bad):
    from jsdlib.index.types import HybridWeights

    kw = {"w1": 1.0, "w2": 1.0, "tau": 0.1, **bad}
    with pytest.raises(ValueError, match=f"HybridWeights: {next(iter(bad))} must be a finite number"):
        HybridWeights(**kw)


def test_non_finite_document_weights_are_refused():
    from jsdlib.index.exact import ExactBackend
    from jsdlib.index.types import Vectors

    D = np.eye(3, dtype=np.float32)
    D[1, 1] = np.nan
    with pytest.raises(ValueError, match="finite"):
        ExactBackend.build(Vectors(dense=D))


# ------------------------------------------------------------------------------------------------ 14
def test_output_paths_are_checked_before_any_work(tmp_path, capsys):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    cases = [(["eval", "dense", "--json", str(tmp_path)], "--json", "is a folder"),
             (["eval", "dense", "--json", str(a_file / "m.json")], "--json", "is a file, not a folder"),
             (["reproduce", "--out", str(a_file)], "--out", "is an existing file"),
             (["index", "build", "--path", str(a_file)], "--path", "is an existing file"),
             (["jsd", "sweep", "--png", str(tmp_path / "no" / "x.png"), "--json", str(tmp_path)], "--json",
              "is a folder")]
    if os.geteuid() != 0:  # root writes anywhere
        cases.append((["terms", "--image", "dog face", "--png", str(locked / "t.png")], "--png", "not writable"))
    try:
        for argv, option, what in cases:
            t = time.perf_counter()
            assert main(argv) == 2, argv
            err = one_line_error(capsys)
            assert option in err and what in err, err
            assert time.perf_counter() - t < 5, argv         # refused before loading anything
    finally:
        locked.chmod(0o700)
    assert not (tmp_path / "cache").exists()


def test_a_corrupt_image_fails_before_the_captions_are_encoded(tmp_path, capsys, tiny_standin, monkeypatch):
    from jsdlib import vlp

    js, images = karpathy(tmp_path, [("a.jpg", None), ("b.jpg", None)])
    (images / "b.jpg").write_bytes(b"not a jpeg")
    calls = []
    real = vlp.tokenize
    monkeypatch.setattr(vlp, "tokenize", lambda *a: calls.append(1) or real(*a))
    assert main(eval_args(js, images, tiny_standin)) == 2
    err = one_line_error(capsys)
    assert "cannot decode image file" in err and str(images / "b.jpg") in err and not calls


# ------------------------------------------------------------------------------------------------ the CLI
BAD_ARGUMENTS = [
    (["data", "build-emoji", "--out", "DIR", "--n-test", "0"], "--n-test"),   # --out: never the repository's data
    (["data", "build-wordnet", "--out", "FILE"], "--out"),
    (["vlp", "train-standin", "--out", "NEW", "--epochs", "0"], "--epochs"),
    (["eval", "dense", "--batch-size", "-3"], "--batch-size"),
    (["eval", "dense", "--dataset", "nope.json"], "--dataset needs --images"),
    (["eval", "dense", "--dataset", "MISSING", "--images", "."], "MISSING"),
    (["jsd", "compare", "--seeds", "-1"], "--seeds"),
    (["jsd", "compare", "--preset", "nope"], "nope"),
    (["jsd", "sweep", "--scales", "0"], "--scales"),
    (["jsd", "export", "--out", "DIR"], "--out"),
    (["cmc", "compare", "--task", "msmarco"], "--task"),
    (["cmc", "export", "--out", "NEW", "--threads", "0"], "--threads"),
    (["cmc", "sweep", "--task", "wordnet", "--lrs", "1e-4", "--input-scales", "raw"], "--input-scales"),
    (["reproduce", "--workers", "0"], "--workers"),
    (["terms", "--image", "dog face", "--k", "0"], "--k"),
    (["terms", "--image", "dog face", "--model", "MISSING"], "MISSING"),
    (["index", "build", "--backend", "annoy", "--path", "x"], "--backend"),
    (["index", "search", "--path", "DIR", "--query", "cat", "--k", "0"], "--k"),
    (["index", "search", "--path", "DIR", "--query", "cat"], "no saved index"),
    (["reproduce", "--preset", "blip-coco", "--out", "DIR"], "--data"),
    (["reproduce", "--seeds", "x"], "--seeds"),
    (["nope"], "invalid choice"),
]


@pytest.mark.parametrize("argv, named", BAD_ARGUMENTS, ids=[" ".join(a) for a, _ in BAD_ARGUMENTS])
def test_every_subcommand_reports_a_bad_argument_in_one_line(tmp_path, capsys, argv, named):
    (tmp_path / "FILE").write_text("x")
    (tmp_path / "DIR").mkdir()
    subs = {"FILE": str(tmp_path / "FILE"), "DIR": str(tmp_path / "DIR"), "MISSING": str(tmp_path / "missing.x"),
            "NEW": str(tmp_path / "new.safetensors")}   # outputs in tmp_path: a broken CLI must not touch the assets
    argv = [subs.get(a, a) for a in argv]
    named = subs.get(named, named)
    t = time.perf_counter()
    assert main(argv) == 2
    err = one_line_error(capsys)
    assert named in err, err
    assert time.perf_counter() - t < 30


def test_debug_shows_the_traceback(tmp_path, monkeypatch):
    monkeypatch.setenv("JSDLIB_DEBUG", "1")
    with pytest.raises(FileNotFoundError, match="missing.json"):
        main(["eval", "dense", "--dataset", str(tmp_path / "missing.json"), "--images", str(tmp_path)])


def test_cli_process_exit_code_and_single_line():
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    env.pop("JSDLIB_DEBUG", None)
    p = subprocess.run([sys.executable, "-m", "jsdlib.cli.main", "eval", "dense", "--batch-size", "0"], env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and p.stdout == "" and p.stderr.count("\n") == 1 and p.stderr.startswith("jsdlib: ")


# ------------------------------------------------------------------------------------------------ SIGKILL
_TINY_REPRODUCE = textwrap.dedent('''
    """`jsdlib reproduce` with one tiny resumable step (seconds): the runner, the step files and the checkpoints
    are the real ones; the step is a seeded least-squares fit saved after every epoch."""
    import sys, time
    from pathlib import Path
    import torch
    from jsdlib.experiments import reproduce
    from jsdlib.common.checkpoint import open_run, save_state

    def fit(ctx):
        gen = torch.Generator().manual_seed(0)
        X = torch.randn(64, 8, generator=gen)
        y = X @ torch.randn(8, 1, generator=gen)
        model = torch.nn.Linear(8, 1)
        torch.nn.init.zeros_(model.weight)
        torch.nn.init.zeros_(model.bias)
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        sched = torch.optim.lr_scheduler.StepLR(opt, 3, 0.5)
        run_dir, state, _, _ = open_run(ctx.run_root("tiny"), "tiny-v1", model, opt, sched, gen,
                                        {"epoch": 0, "best": None, "losses": []}, log=ctx.log)
        for epoch in range(state["epoch"] + 1, 9):
            idx = torch.randperm(64, generator=gen)[:32]
            loss = ((model(X[idx]) - y[idx]) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            state["epoch"], state["losses"] = epoch, state["losses"] + [loss.item()]
            save_state(run_dir / "last.pt", "tiny-v1", model, opt, sched, gen, state)
            print(f"epoch {epoch}", flush=True)
            time.sleep(float(sys.argv[2]))
        return {"losses": state["losses"], "weight": model.weight.detach().flatten().tolist()}

    reproduce.run(sys.argv[1], steps=[reproduce.Step("tiny", "a tiny resumable fit", fit)], progress=False,
                  log=lambda m: print(m, flush=True))
''')


def test_reproduce_killed_with_sigkill_during_a_step_resumes_to_the_same_result(tmp_path):
    script = tmp_path / "tiny_reproduce.py"
    script.write_text(_TINY_REPRODUCE)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    run = lambda out, pause: subprocess.run([sys.executable, str(script), str(out), pause], env=env,  # noqa: E731
                                            capture_output=True, text=True, timeout=300)
    import runpy

    argv = sys.argv
    try:                                                     # the uninterrupted reference, in this process
        sys.argv = [str(script), str(tmp_path / "ref"), "0"]
        runpy.run_path(str(script), run_name="__main__")
    finally:
        sys.argv = argv
    out = tmp_path / "killed"
    p = subprocess.Popen([sys.executable, str(script), str(out), "0.5"], env=env, stdout=subprocess.PIPE, text=True)
    for line in p.stdout:                                    # kill it after its third epoch, mid-step
        if line.startswith("epoch 3"):
            p.send_signal(signal.SIGKILL)
            break
    p.wait(timeout=60)
    assert p.returncode == -signal.SIGKILL
    assert not (out / "steps" / "tiny.json").exists() and (out / "runs" / "tiny" / "last.pt").is_file()
    again = run(out, "0")
    assert again.returncode == 0, again.stderr
    assert "resumed from" in again.stdout and "after epoch 3" in again.stdout
    a = json.loads((tmp_path / "ref" / "results.json").read_text())["results"]["tiny"]
    b = json.loads((out / "results.json").read_text())["results"]["tiny"]
    assert a == b and len(a["losses"]) == 8


def test_a_corrupted_index_file_is_refused(tmp_path):
    from jsdlib.index.types import Vectors
    from jsdlib.index.registry import build_backend, open_backend

    rng = np.random.default_rng(0)
    docs = Vectors(rng.standard_normal((20, 4)).astype(np.float32),
                   sp.random(20, 30, density=0.2, format="csr", random_state=0, dtype=np.float32))
    build_backend("exact", docs, tmp_path / "ix", provenance={"split": "test"})
    assert open_backend("exact", tmp_path / "ix", expect={"split": "test"}).n_docs == 20
    f = tmp_path / "ix" / "dense.npy"
    raw = bytearray(f.read_bytes())
    raw[-8:] = bytes(8)
    f.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=f"index file {f} is corrupted"):
        open_backend("exact", tmp_path / "ix", expect={"split": "test"})


def test_a_zeshel_world_name_cannot_leave_the_documents_folder(tmp_path):
    from jsdlib.data.errors import DataFormatError
    from jsdlib.data.zeshel import load_zeshel

    (tmp_path / "documents").mkdir()
    (tmp_path / "mentions").mkdir()
    (tmp_path / "secret.json").write_text(json.dumps({"document_id": "d", "title": "t", "text": "a b"}) + "\n")
    m = {"mention_id": "m0", "context_document_id": "d", "corpus": "../secret", "start_index": 0, "end_index": 0,
         "text": "a", "label_document_id": "d"}
    (tmp_path / "mentions" / "test.json").write_text(json.dumps(m) + "\n")
    with pytest.raises(DataFormatError, match="has corpus '../secret', which is not a world name"):
        load_zeshel(tmp_path, "test")


def test_an_unreadable_training_state_is_discarded_and_the_run_starts_over(tmp_path):
    from jsdlib.common.checkpoint import open_run, save_state

    def parts():
        torch.manual_seed(0)
        model = torch.nn.Linear(3, 1)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        return model, opt, torch.optim.lr_scheduler.StepLR(opt, 1), torch.Generator().manual_seed(0)

    model, opt, sched, gen = parts()
    save_state(tmp_path / "last.pt", "id", model, opt, sched, gen, {"epoch": 4, "best": None})
    last = tmp_path / "last.pt"
    last.write_bytes(last.read_bytes()[:200])                       # a crash of another tool, a full disk
    logs = []
    with pytest.warns(UserWarning, match=f"discarding unreadable {last}"):
        _, state, extra, best = open_run(tmp_path, "id", *parts(), {"epoch": 0, "best": None}, log=logs.append)
    assert state == {"epoch": 0, "best": None} and extra == {} and best is None and not last.exists() and not logs


def test_unreadable_paper_inputs_are_named(tmp_path):
    from jsdlib.data.released import load_projection, load_released_features

    src = FIX / "released_features"
    bad = tmp_path / "text.parquet"
    bad.write_bytes((src / "text_embs_before_proj_blip.parquet").read_bytes()[:300])
    with pytest.raises(ValueError, match=f"released feature file {bad} is unreadable"):
        load_released_features(bad, src / "img_embs_before_proj_blip.parquet", src / "dataset_meta.json", "test")
    proj = tmp_path / "proj.pt"
    proj.write_bytes(b"\x80\x02 not a checkpoint")
    with pytest.raises(ValueError, match=f"projection file {proj} is unreadable"):
        load_projection(proj)
