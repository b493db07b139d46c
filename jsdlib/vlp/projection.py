"""A VLP's final projections, the pre-projection features before them, its word embeddings and tokenisation.

JSD starts its dense branch from the VLP's own projections (arXiv 2508.16707)::

    d_t = normalize(W_t h_t + b_t)          d_i = normalize(W_v h_i + b_v)

:func:`projection_params` reads ``W, b`` from any open_clip tower (a ``Parameter`` ``x @ P``, an ``nn.Linear``,
or a Hugging Face text tower's ``proj``); inside :func:`pre_projection` the encoders return ``h``.
"""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Sequence

import torch
from torch import nn


def tokenize(model: nn.Module, tokenizer: Callable, texts: Sequence[str]) -> torch.Tensor:
    """Token ids for ``texts``; for a Hugging Face text tower, trailing all-padding columns are cut.

    The HF towers pool under an attention mask, so padding carries nothing: cutting it gives the same
    features (to float rounding) several times faster on short captions.
    """
    tok = tokenizer(list(texts))
    text = getattr(model, "text", None)
    if text is not None and hasattr(text, "pooler") and hasattr(text, "config"):
        used = (tok != text.config.pad_token_id).any(0)
        n = int(used.nonzero().max()) + 1 if bool(used.any()) else 1
        tok = tok[:, :n]
    return tok


def _text_projection_owner(model: nn.Module) -> tuple[nn.Module, str]:
    """(module, attribute) holding the text tower's final projection."""
    if hasattr(model, "text_projection"):  # open_clip CLIP: a Parameter (width, out) or nn.Linear
        return model, "text_projection"
    text = getattr(model, "text", None)
    if text is not None and hasattr(text, "proj") and hasattr(text, "pooler"):  # HFTextEncoder
        return text, "proj"
    if text is not None and hasattr(text, "text_projection"):  # CustomTextCLIP with TextTransformer
        return text, "text_projection"
    raise NotImplementedError(f"cannot find the text projection of {type(model).__name__}")


def _image_projection_owner(model: nn.Module) -> tuple[nn.Module, str]:
    visual = model.visual
    if hasattr(visual, "proj") and (visual.proj is None or isinstance(visual.proj, (nn.Parameter, torch.Tensor))):
        return visual, "proj"
    raise NotImplementedError(
        f"pre-projection features are implemented for open_clip ViT image towers, not {type(visual).__name__}")


def _as_linear(proj) -> tuple[torch.Tensor, torch.Tensor]:
    """(W, b) with y = W h + b for the projection forms open_clip uses."""
    if proj is None or isinstance(proj, nn.Identity):
        raise NotImplementedError("this tower has no final projection to fine-tune")
    if isinstance(proj, nn.Linear):
        w = proj.weight.detach().clone()
        b = proj.bias.detach().clone() if proj.bias is not None else torch.zeros(w.shape[0])
        return w, b
    if isinstance(proj, (nn.Parameter, torch.Tensor)):  # x @ P with P (in, out)
        w = proj.detach().t().contiguous().clone()
        return w, torch.zeros(w.shape[0])
    raise NotImplementedError(f"projection of type {type(proj).__name__} (e.g. an MLP) is not a single linear map")


def projection_params(model: nn.Module) -> dict[str, torch.Tensor]:
    """The VLP's final projections as linear maps: ``W_t, b_t`` (text) and ``W_v, b_v`` (image)."""
    w_t, b_t = _as_linear(getattr(*_text_projection_owner(model)))
    w_v, b_v = _as_linear(getattr(*_image_projection_owner(model)))
    return {"W_t": w_t.float(), "b_t": b_t.float(), "W_v": w_v.float(), "b_v": b_v.float()}


@contextlib.contextmanager
def pre_projection(model: nn.Module) -> Iterator[nn.Module]:
    """Within the block, ``encode_text`` / ``encode_image`` return pre-projection features ``h``."""
    owners = [_text_projection_owner(model), _image_projection_owner(model)]
    saved = []
    try:
        for owner, attr in owners:
            old = getattr(owner, attr)
            saved.append((owner, attr, old))
            if isinstance(old, nn.Module):
                owner._modules[attr] = nn.Identity()
            else:  # Parameter: open_clip skips a None projection
                owner.register_parameter(attr, None)
        yield model
    finally:
        for owner, attr, old in saved:
            if isinstance(old, nn.Module):
                owner._modules[attr] = old
            else:
                owner.register_parameter(attr, old)


def word_embeddings(vlp_or_model) -> torch.Tensor:
    """The text tower's input word-embedding matrix (|V|, e): the initialisation of JSD's ``E``.

    Takes a :class:`jsdlib.vlp.openclip.VLP` or its ``model``.
    """
    model = vlp_or_model if isinstance(vlp_or_model, nn.Module) else vlp_or_model.model
    if hasattr(model, "token_embedding"):  # CLIP text transformer (BPE)
        return model.token_embedding.weight.detach()
    text = getattr(model, "text", None)
    if text is not None and hasattr(text, "transformer") and hasattr(text.transformer, "get_input_embeddings"):
        return text.transformer.get_input_embeddings().weight.detach()
    if text is not None and hasattr(text, "token_embedding"):
        return text.token_embedding.weight.detach()
    raise NotImplementedError(f"cannot find the word embeddings of {type(model).__name__}")


__all__ = ["tokenize", "projection_params", "pre_projection", "word_embeddings"]
