"""CMC, the multi-candidate reranker (Song et al., EMNLP 2024; arXiv 2405.12801; taught in notebook 05).

A query vector and K candidate vectors read jointly by a 2-layer encoder without positions (:mod:`.model`),
trained on sampled candidates with CE + distillation from the retriever (:mod:`.data`, :mod:`.loss`,
:mod:`.train`), compared with a cross-encoder (:mod:`.cross_encoder`) in the BE / CE / CMC pipelines
(:mod:`.pipelines`) on WordNet linking and emoji text -> image (:mod:`.tasks`); speed in :mod:`.speed`. The paper's
reranker comparison: a poly-encoder and a sum-of-max (ColBERT) reranker (:mod:`.baselines`, trained as CMC is by
:mod:`.baselines_train`), as the extra pipelines ``be_poly`` / ``be_sum_of_max``.
"""
from jsdlib.cmc.baselines import PolyEncoder, SumOfMax, TokenStates, baseline_rerank, sum_of_max
from jsdlib.cmc.baselines_train import make_reranker, train_reranker
from jsdlib.cmc.checkpoint import CMC_WORDNET_ASSET, load_bundled, load_cmc, save_cmc
from jsdlib.cmc.config import PRESETS, TASK_PRESETS, CMCConfig, get_cmc_preset
from jsdlib.cmc.cross_encoder import CEConfig, CrossEncoder, ImageCrossEncoder, PairCache, ce_rerank, train_ce
from jsdlib.cmc.data import RerankData, eval_subset, gold_positions, sample_candidates
from jsdlib.cmc.loss import cmc_loss, teacher_scores
from jsdlib.cmc.model import CMC, CMCHead, TextEncoder, default_device
from jsdlib.cmc.pipelines import (EXTRA_PIPELINES, PIPELINES, aggregate_pipelines, pipeline_tests, run_pipelines,
                                  summary_table)
from jsdlib.cmc.precision import DEFAULT_PRECISION, resolve_bf16, simulate_bf16
from jsdlib.cmc.rerank import cmc_rerank, evaluate_cmc, selection_metrics, top1_accuracy
from jsdlib.cmc.speed import cmc_flops, roofline_table, speed_curve, speed_table
from jsdlib.cmc.tasks import TASKS, emoji_task, load_task, wordnet_task
from jsdlib.cmc.train import train_cmc

__all__ = ["EXTRA_PIPELINES", "PolyEncoder", "SumOfMax", "TokenStates", "baseline_rerank", "make_reranker",
           "selection_metrics", "sum_of_max", "train_reranker",
           "CMC", "CMCConfig", "CMCHead", "CEConfig", "CMC_WORDNET_ASSET", "CrossEncoder", "DEFAULT_PRECISION",
           "ImageCrossEncoder", "PIPELINES", "PRESETS", "PairCache", "RerankData", "TASKS", "TASK_PRESETS",
           "TextEncoder",
           "aggregate_pipelines", "ce_rerank", "cmc_flops", "cmc_loss", "cmc_rerank", "default_device", "emoji_task",
           "eval_subset", "evaluate_cmc", "top1_accuracy", "get_cmc_preset", "gold_positions", "load_bundled", "load_cmc", "load_task",
           "pipeline_tests", "resolve_bf16", "roofline_table", "run_pipelines", "sample_candidates", "save_cmc",
           "simulate_bf16", "speed_curve", "speed_table", "summary_table", "teacher_scores", "train_ce", "train_cmc",
           "wordnet_task"]
