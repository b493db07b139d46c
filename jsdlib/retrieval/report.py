"""Both bi-encoders ("as is" and fine-tuned) on a WordNet split: R@k, MRR@10 and R@64 per domain (README's table;
``python -m jsdlib.retrieval.report --json out.json``)."""
from __future__ import annotations

import argparse
import os
import time
from dataclasses import asdict

import numpy as np

from jsdlib.common.io import write_json
from jsdlib.common.seeding import num_threads
from jsdlib.data.zeshel import load_zeshel
from jsdlib.data.paths import wordnet_dir
from jsdlib.retrieval.finetune import FinetuneConfig, load_biencoder
from jsdlib.retrieval.topk import retrieval_metrics, retrieve


def report(split: str = "test", cfg: FinetuneConfig | None = None, k: int = 1024, kinds=("asis", "finetuned"),
           progress: bool = True, log=print) -> dict:
    """Both BEs on a WordNet split (all its domains): R@{1,2,4,...,64}, MRR@10 (micro) and R@64 per domain."""
    cfg = cfg or FinetuneConfig()
    zset = load_zeshel(wordnet_dir(), split)
    out = {"split": split, "n_mentions": len(zset), "k": k, "finetune_config": asdict(cfg), "bi_encoders": {}}
    for kind in kinds:
        t0 = time.time()
        be = load_biencoder(kind, cfg, progress=progress)
        ret = retrieve(be, zset, k=k, progress=progress)
        m = retrieval_metrics(ret, ks=(1, 2, 4, 8, 16, 32, 64))
        r = ret.gold_ranks()
        dom = np.array([x["corpus"] for x in zset.mentions])
        m["per_domain_R@64"] = {d: float(100 * np.mean(r[dom == d] < 64)) for d in zset.domains}
        m["macro_R@64"] = float(np.mean(list(m["per_domain_R@64"].values())))
        m["seconds"] = round(time.time() - t0, 1)
        if kind == "finetuned":
            m["history"] = getattr(be, "meta", {}).get("history")
        out["bi_encoders"][kind] = m
        log(f"{kind}: " + "  ".join(f"{key} {m[key]:.2f}" for key in ("R@1", "R@16", "R@64", "MRR@10")))
    return out


def main(argv=None) -> int:
    """``python -m jsdlib.retrieval.report [--json out.json]``: report both BEs on the WordNet test domains."""
    p = argparse.ArgumentParser(prog="python -m jsdlib.retrieval.report", description=main.__doc__)
    p.add_argument("--split", default="test", choices=["val", "test"])
    p.add_argument("--k", type=int, default=1024)
    p.add_argument("--n-train", type=int, default=FinetuneConfig.n_train, help="train mentions (0 = all)")
    p.add_argument("--epochs", type=int, default=FinetuneConfig.epochs)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", help="write the report here")
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args(argv)
    cfg = FinetuneConfig(n_train=a.n_train or None, epochs=a.epochs)
    with num_threads(a.threads or min(2, os.cpu_count() or 1)):
        res = report(a.split, cfg, a.k, progress=not a.quiet)
    if a.json:
        write_json(res, a.json)
    return 0


__all__ = ["report", "main"]

if __name__ == "__main__":
    raise SystemExit(main())
