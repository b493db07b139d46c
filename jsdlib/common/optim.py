"""AdamW with or without the usual weight-decay groups.

The authors' rerankers (``main_reranker.py``, as Hugging Face's examples do) decay every weight matrix but
not the biases and LayerNorm weights::

    groups = [ {params: W with W.ndim >= 2, weight_decay: wd},  {params: biases and norms (ndim < 2), weight_decay: 0} ]

:func:`adamw` builds that split when ``decay_groups`` is true (the rule is by shape: every 1-D parameter is a bias
or a normalisation scale here), else one group with ``wd`` on everything (PyTorch's plain AdamW).
"""
from __future__ import annotations

from typing import Iterable

import torch
from torch import nn


def decay_split(module: nn.Module, params: Iterable[torch.Tensor]) -> tuple[list, list]:
    """``(decayed, not_decayed)``: ``params`` (a subset of ``module``'s) split by shape, in ``module``'s order."""
    wanted = {id(p) for p in params}
    named = [(n, p) for n, p in module.named_parameters() if id(p) in wanted]
    if len(named) != len(wanted):
        raise ValueError("decay_split: every parameter must belong to the module")
    return [p for _, p in named if p.ndim >= 2], [p for _, p in named if p.ndim < 2]


def param_groups(module: nn.Module, params: list, lr: float, weight_decay: float,
                 decay_groups: bool = False) -> list[dict]:
    """AdamW's parameter groups for ``params`` (trainable parameters of ``module``) at ``lr``: one group, or the two
    groups of the module docstring when ``decay_groups``."""
    if not decay_groups:
        return [{"params": list(params), "lr": lr, "weight_decay": weight_decay}]
    decayed, plain = decay_split(module, params)
    return [{"params": decayed, "lr": lr, "weight_decay": weight_decay},
            {"params": plain, "lr": lr, "weight_decay": 0.0}]


def adamw(module: nn.Module, params: list, lr: float, eps: float, weight_decay: float,
          decay_groups: bool = False) -> torch.optim.AdamW:
    """AdamW over ``params`` (trainable parameters of ``module``) in :func:`param_groups`."""
    return torch.optim.AdamW(param_groups(module, params, lr, weight_decay, decay_groups), lr=lr, eps=eps)


__all__ = ["decay_split", "param_groups", "adamw"]
