"""The MiniLM bi-encoder of the entity-linking task (CMC, EMNLP 2024: the first-stage retriever whose top-K CMC
and the cross-encoder rerank): the model and its encode cache, top-K retrieval within a mention's domain, and its
fine-tuning with in-batch + hard negatives. Taught in notebook 05 (multi-candidate reranking). The report of
both bi-encoders: ``python -m jsdlib.retrieval.report`` (not imported here: it is a command).
"""
from jsdlib.retrieval.biencoder import SCALE, BiEncoder, cached_encode, mean_pool
from jsdlib.retrieval.finetune import FinetuneConfig, finetune, finetuned_path, load_biencoder, save_biencoder
from jsdlib.retrieval.topk import PAD_SCORE, Retrieval, retrieval_metrics, retrieve

__all__ = ["BiEncoder", "cached_encode", "mean_pool", "SCALE", "Retrieval", "retrieve", "retrieval_metrics",
           "PAD_SCORE", "FinetuneConfig", "finetune", "finetuned_path", "load_biencoder", "save_biencoder"]
