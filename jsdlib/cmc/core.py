"""jsdlib 0.1's flat CMC module, now only re-imports (``# moved:``) so that its callers keep working until the lead
rewrites them to the new homes (jsdlib 0.2, issue 11). The code lives in :mod:`jsdlib.cmc` (precision, model,
data, loss, config, train, rerank, checkpoint, cross_encoder, pipelines, tasks, speed); ``compare``,
``export_wordnet_head`` and ``lr_sweep`` in :mod:`jsdlib.experiments.cmc_compare`, ``Linker`` in
:mod:`jsdlib.apps.linker` (layer 3: reached lazily by ``__getattr__`` below, never imported by layer 2).
"""
from __future__ import annotations

import importlib

from jsdlib.cmc.checkpoint import CMC_FORMAT, CMC_WORDNET_ASSET, load_bundled, load_cmc, save_cmc  # moved:
from jsdlib.cmc.config import PRESETS, CMCConfig, get_cmc_preset  # moved:
from jsdlib.cmc.cross_encoder import CEConfig, CrossEncoder, ImageCrossEncoder, PairCache, ce_rerank, train_ce  # moved:
from jsdlib.cmc.data import RerankData, eval_subset, gold_positions, sample_candidates  # moved:
from jsdlib.cmc.loss import cmc_loss, teacher_scores  # moved:
from jsdlib.cmc.model import CMC, CMCHead, TextEncoder, default_device, ffn_dim  # moved:
from jsdlib.cmc.pipelines import (PIPELINE_TESTS, PIPELINES, RECALL_KS, SUMMARY_KEYS, aggregate_pipelines,  # moved:
                                  pipeline_tests, ranking_metrics, run_pipelines, summary_table)  # moved:
from jsdlib.cmc.precision import (DEFAULT_PRECISION, PRECISIONS, fused_encoder_layer, resolve_bf16,  # moved:
                                  simulate_bf16)  # moved:
from jsdlib.cmc.rerank import catalogue_vectors, cmc_rerank, evaluate_cmc, top1_accuracy  # moved:
from jsdlib.cmc.speed import cmc_flops, roofline_table, speed_curve, speed_table  # moved:
from jsdlib.cmc.tasks import (TASKS, WORDNET_TRAIN_MAX_ENTITIES, WORDNET_VAL_MAX_ENTITIES, emoji_task,  # moved:
                              load_task, wordnet_domains, wordnet_task)  # moved:
from jsdlib.cmc.train import _training_queries, train_cmc  # moved:

_MOVED_UP = {"compare": "jsdlib.experiments.cmc_compare",  # moved:
             "export_wordnet_head": "jsdlib.experiments.cmc_compare",  # moved:
             "lr_sweep": "jsdlib.experiments.cmc_compare", "Linker": "jsdlib.apps.linker"}  # moved:


def __getattr__(name: str):  # moved: (names now in layer 3; an import statement here would point upwards)
    if name in _MOVED_UP:  # moved:
        return getattr(importlib.import_module(_MOVED_UP[name]), name)  # moved:
    raise AttributeError(f"module 'jsdlib.cmc.core' has no attribute {name!r}")  # moved:
