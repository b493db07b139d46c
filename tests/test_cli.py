"""`jsdlib eval dense`: the JSON schema, reproducibility, any Karpathy-format set, clear errors."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch

from jsdlib.cli.main import main

FIX = Path(__file__).resolve().parent / "fixtures"
T2I = {"R@1", "R@5", "R@10", "MRR@10"}


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("JSDLIB_CACHE", str(tmp_path / "cache"))


def test_eval_dense_bundled_default_is_reproducible_and_beats_the_floor(tmp_path, capsys):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    assert main(["eval", "dense", "--json", str(a), "--quiet"]) == 0
    assert main(["eval", "dense", "--json", str(b), "--quiet", "--no-cache"]) == 0
    ra, rb = json.loads(a.read_text()), json.loads(b.read_text())
    assert set(ra["t2i"]) == T2I and set(ra["i2t"]) == {"R@1", "R@5", "R@10"}
    assert ra["n_images"] == 500 and ra["n_captions"] == 1000
    assert set(ra["unseen_concept"]) >= {"t2i", "n_images"} and set(ra["unseen_concept"]["t2i"]) == T2I
    assert abs(ra["rsum"] - sum(ra[d][f"R@{k}"] for d in ("t2i", "i2t") for k in (1, 5, 10))) < 1e-9
    for d in ("t2i", "i2t"):
        for k, v in ra[d].items():
            assert v == pytest.approx(rb[d][k], abs=1e-9)   # cached and freshly encoded agree
    # chance level is 100/500 = 0.2 %; the calibration floor is t2i R@1 = 51 %
    assert ra["t2i"]["R@1"] >= 51.0
    out = capsys.readouterr().out
    assert "unseen-concept queries" in out and "| all queries |" in out


def test_eval_dense_any_karpathy_set(tmp_path):
    from jsdlib.vlp.standin import save_standin
    from jsdlib.vlp.standin import build_standin

    torch.manual_seed(0)
    arch = {"image_size": 32, "patch_size": 16, "width": 32, "layers": 1, "embed_dim": 16}
    model, _, _ = build_standin(arch)
    ck = tmp_path / "tiny.safetensors"
    save_standin(model, ck, arch, {})
    out = tmp_path / "flickr.json"
    rc = main(["eval", "dense", "--dataset", str(FIX / "flickr30k" / "dataset_flickr30k.json"),
               "--images", str(FIX / "flickr30k" / "flickr30k-images"), "--split", "test",
               "--pretrained", str(ck), "--json", str(out), "--quiet"])
    assert rc == 0
    r = json.loads(out.read_text())
    assert r["dataset"] == "flickr30k" and r["n_images"] >= 1 and r["n_captions"] == 5 * r["n_images"]
    assert "unseen_concept" not in r


def test_eval_dense_errors(tmp_path, capsys):
    assert main(["eval", "dense", "--dataset", str(FIX / "flickr30k" / "dataset_flickr30k.json")]) == 2
    assert capsys.readouterr().err.startswith("jsdlib: --dataset needs --images")
    assert main(["eval", "dense", "--dataset", str(tmp_path / "dataset_flickr30k.json"), "--images",
                 str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Karpathy-format JSON not found" in err and "dataset_flickr30k.json" in err


def test_threads_hold_for_the_command_only(monkeypatch, capsys):
    """`--threads` is the program's setting for one command: `main` restores the caller's torch thread count."""
    from jsdlib.cli import evaluate

    seen = []

    def load_split(args):
        seen.append(torch.get_num_threads())
        raise FileNotFoundError("stop here")

    monkeypatch.setattr(evaluate, "load_split", load_split)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert main(["eval", "dense", "--threads", "1"]) == 2
        assert seen == [1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert capsys.readouterr().err == "jsdlib: stop here\n"


def test_shared_options_are_declared_once_and_unknown_ones_are_refused(capsys):
    """Every command that takes --threads / --quiet gets the one declaration of jsdlib.cli.options; a command
    refuses an option it does not know in one line naming it and itself, while the data builders get the rest of
    the line for their own parser."""
    from jsdlib.cli.main import build_parser, parse
    from jsdlib.cli.options import SHARED

    def commands(parser):  # the leaf parsers: (prog, parser)
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    nested = [a for a in sub._actions if isinstance(a, argparse._SubParsersAction)]
                    yield from commands(sub) if nested else [(sub.prog, sub)]

    threads = [a for a in SHARED["threads"]._actions if "--threads" in a.option_strings][0]
    found = {n: [a for a in sub._actions if "--threads" in a.option_strings] for n, sub in commands(build_parser())}
    assert len(found) == 14 and sum(bool(v) for v in found.values()) >= 11
    assert all(v == [threads] for v in found.values() if v)
    assert main(["jsd", "export", "--bogus", "1"]) == 2
    assert capsys.readouterr().err.startswith("jsdlib: jsd export: unrecognized arguments: --bogus 1")
    assert parse(["data", "build-emoji", "--out", "x", "--n-test", "3"]).options == ["--out", "x", "--n-test", "3"]


def test_jsd_export_passes_the_grounding_options(monkeypatch, tmp_path):
    """`jsdlib jsd export --train-set styles --caption-words 1 --vocab-mask words --standin CKPT`: every option
    reaches train_bundled_jsd as an override of BUNDLED_RECIPE (the grounding rule's choice, issue 14), a given 0
    included; without options nothing is overridden."""
    import jsdlib.cli.jsd as cli_jsd
    seen = {}
    monkeypatch.setattr(cli_jsd, "train_bundled_jsd", lambda out, **kw: seen.update(out=out, **kw))
    out = tmp_path / "m.safetensors"
    assert main(["jsd", "export", "--out", str(out), "--train-set", "styles", "--caption-words", "1",
                 "--vocab-mask", "words", "--standin", "ck.safetensors", "--epochs", "80", "--patience", "20",
                 "--quiet"]) == 0
    assert seen["train_set"] == "styles" and seen["standin"] == "ck.safetensors"
    assert seen["epochs"] == 80 and seen["patience"] == 20                  # pec-words-cw1-styles-e2x
    assert seen["caption_words_weight"] == 1.0 and seen["vocab_mask"] == "words" and seen["pec"] is None
    seen.clear()
    assert main(["jsd", "export", "--out", str(out), "--quiet"]) == 0
    # no option given: nothing overridden, so train_bundled_jsd takes BUNDLED_RECIPE (its defaults; PEC off)
    assert seen["standin"] is None and seen["pec"] is None
    for flag, pec in (("--pec", True), ("--no-pec", False)):
        seen.clear()
        assert main(["jsd", "export", "--out", str(out), flag, "--quiet"]) == 0 and seen["pec"] is pec
    assert main(["jsd", "export", "--out", str(out), "--pec", "--no-pec"]) == 2
    assert not {"train_set", "caption_words_weight", "vocab_mask", "epochs", "patience"} & set(seen)
    seen.clear()
    assert main(["jsd", "export", "--out", str(out), "--train-set", "noto", "--caption-words", "0", "--vocab-mask",
                 "none", "--quiet"]) == 0        # the recipe before issue 14, option by option
    assert seen["train_set"] == "noto" and seen["caption_words_weight"] == 0 and seen["vocab_mask"] == "none"
