"""What every part of jsdlib shares (layer 0): where files live (paths), one atomic write (io), one warm-up/decay
schedule, seeds and threads without global state (seeding), one resumable training loop (fit, with its
checkpoints), integrity checks of the files jsdlib writes, retrieval metrics and statistics over seeds (stats).
Used by both papers' code (JSD, CIKM 2025; CMC, EMNLP 2024); the loop is taught where its trainers are (02, 05).

The torch-free names are imported here; the torch ones on first use (``jsdlib.common.fit`` etc. import them
directly), so that ``jsdlib.common.io`` stays importable without torch for the data builders.
"""
from importlib import import_module

from jsdlib.common.io import atomic_path, atomic_write, save_torch, write_json
from jsdlib.common.metrics import format_table, mrr_at_k, success_at_k, t2i_metrics
from jsdlib.common.paths import ASSETS, PACKAGE_DIR, REPO_ROOT, cache_dir, minilm_path
from jsdlib.common.stats import mean_std, paired_test

_LAZY = {  # name -> module (these import torch)
    "Task": "fit", "FitConfig": "fit",          # the function: jsdlib.common.fit.fit (the module has its name)
    "warmup_decay": "schedule", "warmup_steps": "schedule", "lr_factor": "schedule",
    "generator": "seeding", "seeded": "seeding", "num_threads": "seeding",
    "IntegrityError": "integrity", "load_safetensors": "integrity", "save_safetensors": "integrity",
    "file_sha256": "integrity", "safetensors_digest": "integrity",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(f"jsdlib.common.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'jsdlib.common' has no attribute {name!r}")


__all__ = ["atomic_path", "atomic_write", "save_torch", "write_json", "format_table", "mrr_at_k", "success_at_k",
           "t2i_metrics", "ASSETS", "PACKAGE_DIR", "REPO_ROOT", "cache_dir", "minilm_path", "mean_std", "paired_test",
           *_LAZY]
