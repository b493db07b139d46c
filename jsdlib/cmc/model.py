"""The CMC model (Song et al., EMNLP 2024; arXiv 2405.12801): the head over ``[q; c_1..c_K]`` and its text encoders.

A query vector ``q`` and K candidate vectors ``c_1..c_K`` (looked up by the retriever's top-K ids in a catalogue
encoded once) form one sequence, **without** positional, type or separator embeddings and without a mask, so the
model is permutation-equivariant over the candidates::

    X^(0) = [q; c_1; ...; c_K]                                   (B, 1+K, d)
    X^(l) = 0.5 * Layer_l(X^(l-1)) + 0.5 * X^(l-1),  l = 1, 2    Layer: post-LN transformer encoder layer
    s_k   = X^(2)_0 . X^(2)_k                                    (dot product, no temperature)

Two variants (``encoders=``): ``"frozen"`` trains only the head on precomputed vectors (the retriever's own,
since CMC's encoders start from the BE checkpoint), ``"finetuned"`` also trains CMC's own query and candidate
MiniLM encoders (initialised from the BE) and re-encodes the catalogue after training.

Input scale (``input_scale=``, issue 15): ``"unit"`` feeds the vectors as given (the frozen variant: the retriever's
unit-norm vectors; the finetuned variant: MiniLM's raw [CLS] states), ``"layernorm"`` rescales each vector to
the norm of a LayerNorm output, ``x' = sqrt(d) x / ||x||`` (the authors feed raw [CLS] states, norm ~ sqrt(d):
with unit inputs the ``0.5 X`` skip path carries ~1/sqrt(d) of the signal after the first layer).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from jsdlib.cmc.config import INPUT_SCALES
from jsdlib.cmc.precision import DEFAULT_PRECISION, fused_encoder_layer, resolve_bf16
from jsdlib.common.paths import minilm_path
from jsdlib.retrieval.biencoder import mean_pool
from jsdlib.vlp.minilm import minilm_tokenizer
from jsdlib.vlp.quiet import quiet_loading


def ffn_dim(d: int) -> int:
    """Feed-forward width of a CMC layer: 2048 at d = 768, scaled with d (1024 at MiniLM's d = 384)."""
    return int(round(2048 * d / 768))


def scale_inputs(x: torch.Tensor, how: str) -> torch.Tensor:
    """CMC's input vectors at the scale ``how``: ``"unit"`` = ``x`` unchanged; ``"layernorm"`` = ``sqrt(d) x / ||x||``
    (each vector along the last axis gets norm sqrt(d), as a LayerNorm output with unit gain)."""
    if how == "unit":
        return x
    if how == "layernorm":
        return x * (x.shape[-1] ** 0.5) / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    raise ValueError(f"input_scale must be one of {INPUT_SCALES}, got {how!r}")


def default_device() -> str:
    """``"cuda"`` when torch sees a GPU, else ``"cpu"`` (what CMC training, the CE and the speed curve run on)."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def pretrained_minilm() -> nn.Module:
    """The pretrained all-MiniLM-L6-v2 (:func:`jsdlib.common.paths.minilm_path`), loaded quietly."""
    from transformers import AutoModel  # noqa: PLC0415 (importing transformers' models costs ~5 s: only when used)

    with quiet_loading():
        return AutoModel.from_pretrained(minilm_path())


class CMCHead(nn.Module):
    """The CMC head: 2 layers of ``X = 0.5 * Layer(X) + 0.5 * X`` over ``[q; c_1..c_K]``; scores ``q_out . c_out``.

    ``Layer`` is ``nn.TransformerEncoderLayer(d, 4, 2048 d / 768, dropout 0.1, ReLU, post-LN)``. No positions,
    no mask: permuting the candidates permutes the scores the same way.

    Training mode runs the layers as they are (dropout on). Eval mode runs the same layers through
    :func:`fused_encoder_layer` (fused attention, dropout off: the same function) in ``precision``: ``"fp32"``
    (exact, the default: :data:`DEFAULT_PRECISION` says why), ``"auto"`` (bf16 autocast where the hardware has
    native bf16, fp32 elsewhere) or ``"bf16"`` (forced). The final dot products are always computed in fp32.
    """

    def __init__(self, dim: int, n_layers: int = 2, n_heads: int = 4, dropout: float = 0.1,
                 precision: str = DEFAULT_PRECISION):
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"CMCHead: dim {dim} is not divisible by n_heads {n_heads}")
        resolve_bf16(precision, "cpu")  # validates the name
        self.dim = dim
        self.precision = precision
        self.layers = nn.ModuleList([
            nn.TransformerEncoderLayer(dim, n_heads, dim_feedforward=ffn_dim(dim), dropout=dropout,
                                       activation="relu", batch_first=True, norm_first=False)
            for _ in range(n_layers)])

    def forward(self, q: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Scores (B, K) for query vectors ``q`` (B, d) and candidate vectors ``c`` (B, K, d)."""
        if q.dim() != 2 or c.dim() != 3 or c.shape[0] != q.shape[0] or c.shape[2] != q.shape[1]:
            raise ValueError(f"CMCHead: expects q (B, d) and c (B, K, d), got {tuple(q.shape)} and {tuple(c.shape)}")
        if q.shape[1] != self.dim:
            raise ValueError(f"CMCHead: built for d = {self.dim}, got vectors of width {q.shape[1]}")
        if c.shape[1] == 0:
            raise ValueError("CMCHead: needs at least one candidate")
        X = torch.cat([q.unsqueeze(1), c], dim=1)          # X = [q; c_1; ...; c_K], no positions
        if self.training:
            for layer in self.layers:
                X = 0.5 * layer(X) + 0.5 * X               # X = 0.5 Layer(X) + 0.5 X
        else:
            bf16 = resolve_bf16(self.precision, X.device)
            with torch.autocast(device_type=X.device.type, dtype=torch.bfloat16, enabled=bf16):
                for layer in self.layers:
                    X = 0.5 * fused_encoder_layer(layer, X) + 0.5 * X
            X = X.float()
        return torch.einsum("bd,bkd->bk", X[:, 0], X[:, 1:])   # s_k = q_out . c_k,out


POOLINGS = ("cls", "mean_unit")


class TextEncoder(nn.Module):
    """A MiniLM (BERT-style) text encoder: ``encode(texts) -> (N, hidden)``.

    ``pooling="cls"``: the raw [CLS] hidden state (the authors' CMC encoders, norm ~ sqrt(d)); ``"mean_unit"``:
    ``normalize(mean_t h_t)`` over the attention mask, the pooling of jsdlib's bi-encoder (all-MiniLM-L6-v2 was
    trained with it), so a CMC encoder copied from the BE starts from exactly the BE's vectors
    (:meth:`CMC.from_biencoder`). ``model`` defaults to the pretrained all-MiniLM-L6-v2 (:func:`pretrained_minilm`);
    ``tokenizer`` to MiniLM's with the ZeSHEL markers kept whole (:func:`jsdlib.vlp.minilm.minilm_tokenizer`);
    tests pass a tiny random ``transformers.BertModel``.
    """

    def __init__(self, model=None, tokenizer=None, max_len: int = 64, pooling: str = "cls"):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        self.bert = model if model is not None else pretrained_minilm()
        self.tokenizer = tokenizer if tokenizer is not None else minilm_tokenizer(markers=True)
        self.max_len = max_len
        self.pooling = pooling

    @property
    def dim(self) -> int:
        return self.bert.config.hidden_size

    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        t = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_len,
                           return_tensors="pt").to(self.bert.device)
        h = self.bert(input_ids=t["input_ids"], attention_mask=t["attention_mask"]).last_hidden_state
        if self.pooling == "cls":
            return h[:, 0]
        return torch.nn.functional.normalize(mean_pool(h, t["attention_mask"]), dim=-1)   # the BE's pooling

    @torch.no_grad()
    def encode(self, texts: Sequence[str], batch: int = 128, progress: bool = False) -> torch.Tensor:
        """``(N, hidden)`` [CLS] vectors of ``texts`` in eval mode, in batches (the training mode is restored)."""
        was = self.training
        self.eval()
        out = [self(texts[s:s + batch]) for s in tqdm(range(0, len(texts), batch), disable=not progress,
                                                       desc="encode", leave=False)]
        self.train(was)
        return torch.cat(out).cpu() if out else torch.zeros(0, self.dim)


class CMC(nn.Module):
    """CMC: the head plus, for ``encoders="finetuned"``, its own query and candidate text encoders.

    ``encoders="frozen"``: ``forward(q_vec, c_vec)`` scores precomputed vectors (at ``input_scale``, above). ``encoders="finetuned"``:
    ``query_encoder`` / ``candidate_encoder`` (:class:`TextEncoder`) turn texts into the vectors; the
    catalogue is re-encoded with :meth:`encode_catalogue` after training.
    """

    VARIANTS = ("frozen", "finetuned")

    def __init__(self, dim: int, encoders: str = "frozen", query_encoder: TextEncoder | None = None,
                 candidate_encoder: TextEncoder | None = None, dropout: float = 0.1, input_scale: str = "unit"):
        super().__init__()
        if encoders not in self.VARIANTS:
            raise ValueError(f"encoders must be one of {self.VARIANTS}, got {encoders!r}")
        if input_scale not in INPUT_SCALES:
            raise ValueError(f"input_scale must be one of {INPUT_SCALES}, got {input_scale!r}")
        self.input_scale = input_scale
        if encoders == "finetuned" and (query_encoder is None or candidate_encoder is None):
            raise ValueError("encoders='finetuned' needs a query_encoder and a candidate_encoder (TextEncoder)")
        self.encoders = encoders
        self.head = CMCHead(dim, dropout=dropout)
        self.query_encoder = query_encoder if encoders == "finetuned" else None
        self.candidate_encoder = candidate_encoder if encoders == "finetuned" else None

    @classmethod
    def from_biencoder(cls, be, head: "CMCHead | None" = None, dropout: float = 0.1) -> "CMC":
        """A finetuned-variant CMC whose query / candidate encoders are copies of the bi-encoder ``be``'s towers
        with its pooling (``"mean_unit"``) and tokenizer, so before training it reads exactly the frozen variant's
        vectors; ``head``: a trained frozen-variant head to start from (its weights are copied), else a new one.

        The CMC paper initialises CMC's encoders from the BE checkpoint; starting the head from a frozen-variant
        head is jsdlib's two-stage schedule for a CPU budget (docs/fidelity.md).
        """
        import copy  # noqa: PLC0415

        enc = [TextEncoder(copy.deepcopy(m), be.tokenizer, be.max_len, pooling="mean_unit")
               for m in (be.query_encoder, be.cand_encoder)]
        for e in enc:
            e.bert.train()
        model = cls(enc[0].dim, "finetuned", enc[0], enc[1], dropout=dropout)
        if head is not None:
            model.head.load_state_dict(head.state_dict())
        return model

    def forward(self, q: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Scores (B, K) of query vectors ``q`` (B, d) and candidate vectors ``c`` (B, K, d) at ``input_scale``."""
        return self.head(scale_inputs(q, self.input_scale), scale_inputs(c, self.input_scale))

    def score_texts(self, query_texts: Sequence[str], cand_texts: Sequence[Sequence[str]]) -> torch.Tensor:
        """Scores (B, K) straight from texts (finetuned variant; gradients flow into both encoders)."""
        if self.encoders != "finetuned":
            raise ValueError("score_texts needs encoders='finetuned' (the frozen variant scores vectors)")
        B, K = len(cand_texts), len(cand_texts[0])
        q = self.query_encoder(query_texts)
        c = self.candidate_encoder([t for row in cand_texts for t in row]).view(B, K, -1)
        return self(q, c)

    @torch.no_grad()
    def encode_catalogue(self, cand_texts: Sequence[str], batch: int = 128, progress: bool = False) -> torch.Tensor:
        return self.candidate_encoder.encode(cand_texts, batch, progress)

    @torch.no_grad()
    def encode_queries(self, texts: Sequence[str], batch: int = 128, progress: bool = False) -> torch.Tensor:
        return self.query_encoder.encode(texts, batch, progress)
