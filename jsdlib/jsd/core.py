"""jsdlib 0.1's ``jsd`` module, split by idea in 0.2: the names below moved (this shim goes after the merge).

losses (scores, InfoNCE, KD, teachers, jsd_loss, d2s_loss), model (JSDModel), batches, train (JSD, D2S, PEC),
evaluate (encode, score matrices), efficiency, methods (the comparison table).
"""
from jsdlib.jsd.batches import epoch_batches, steps_per_epoch  # moved:
from jsdlib.jsd.efficiency import efficiency  # moved:
from jsdlib.jsd.evaluate import encode, evaluate_model, score_matrices, sparse_product, split_scores  # moved:
from jsdlib.jsd.losses import d2s_loss, dense_score, info_nce, integrated_score, jsd_loss, kd_loss  # moved:
from jsdlib.jsd.losses import self_kd, sparse_score, teachers  # moved:
from jsdlib.jsd.methods import METHODS, run_method, run_methods  # moved:
from jsdlib.jsd.model import JSDModel, build_model  # moved:
from jsdlib.jsd.train import pec_probability, train_d2s, train_jsd, within_budget  # moved:
