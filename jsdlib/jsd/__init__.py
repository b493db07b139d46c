"""JSD, joint sparse-dense optimisation for text-image retrieval (Song et al., CIKM 2025), and its D2S baseline.

A shared sparse head turns the fine-tuned dense vectors of a frozen VLP into vocabulary-sized term weights;
dense, sparse and integrated scores teach each other by self-distillation. Notebooks 02 (the method) and 03
(the terms it learns) teach it; the equations are in ``jsdlib.jsd.losses``.
"""
from jsdlib.jsd.batches import epoch_batches, steps_per_epoch
from jsdlib.jsd.efficiency import active_terms, efficiency, flops, term_shares
from jsdlib.jsd.features import FeatureSet, emoji_features
from jsdlib.jsd.evaluate import (authors_integrated_score, encode, evaluate_model, score_matrices, sparse_product,
                                 split_scores)
from jsdlib.jsd.head import SparseHead, log1p_relu
from jsdlib.jsd.io import JSD_ASSET, BundledModelError, load_jsd, save_jsd
from jsdlib.jsd.losses import (REGULARISERS, d2s_loss, dense_score, flops_reg, info_nce, integrated_score, jsd_loss,
                               kd_loss, l1_reg, reg_weight, regulariser, self_kd, sparse_score, sparsity_penalty,
                               teachers)
from jsdlib.jsd.matching import match_d2s_l1, match_flops
from jsdlib.jsd.methods import ALL_METHODS, EXTRA_METHODS, METHODS, run_method, run_methods
from jsdlib.jsd.model import JSDModel, build_model
from jsdlib.jsd.presets import AUTHORS_RUN, CPU_PRESETS, D2SRecipe, PAPER_PRESETS, PRESETS, JSDConfig, get_preset
from jsdlib.jsd.train import pec_probability, train_d2s, train_d2s_own, train_jsd, within_budget
from jsdlib.jsd.vocab import Vocabulary, bag_mask, caption_token_ids, top_terms

__all__ = ["epoch_batches", "steps_per_epoch", "active_terms", "efficiency", "flops", "term_shares", "encode",
           "FeatureSet", "emoji_features", "evaluate_model", "score_matrices", "sparse_product", "split_scores", "SparseHead", "log1p_relu",
           "JSD_ASSET", "BundledModelError", "load_jsd", "save_jsd", "REGULARISERS", "d2s_loss", "dense_score",
           "flops_reg", "info_nce", "integrated_score", "jsd_loss", "kd_loss", "l1_reg", "reg_weight", "regulariser",
           "self_kd", "sparse_score", "sparsity_penalty", "teachers", "METHODS", "run_method", "run_methods",
           "JSDModel", "build_model", "CPU_PRESETS", "PAPER_PRESETS", "PRESETS", "JSDConfig", "get_preset",
           "pec_probability", "train_d2s", "train_jsd", "within_budget", "Vocabulary", "bag_mask",
           "caption_token_ids", "top_terms", "authors_integrated_score", "match_d2s_l1", "match_flops",
           "ALL_METHODS", "EXTRA_METHODS", "AUTHORS_RUN", "D2SRecipe", "train_d2s_own"]
