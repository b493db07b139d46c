"""``jsdlib index build|search``: exact / brute / faiss / Seismic / Milvus search over the emoji images."""
from __future__ import annotations

from jsdlib.apps.bundled import EmojiSearch
from jsdlib.cli.options import command, group
from jsdlib.common.cliargs import UserError, check_output, positive_int
from jsdlib.index.types import HybridWeights, Vectors
from jsdlib.index.registry import build_backend, open_backend
from jsdlib.apps.emoji_index import emoji_vectors
from jsdlib.jsd.io import JSD_ASSET
from jsdlib.common.integrity import file_sha256

BACKENDS = ["exact", "brute", "faiss", "seismic", "milvus"]


def _jsd_digest() -> str:
    """What the emoji index vectors come from: the bundled JSD model's file digest."""
    return file_sha256(JSD_ASSET)[:16]


def cmd_index_build(args) -> int:
    if not str(args.path).startswith(("http://", "https://", "tcp://", "unix:")):  # not a Milvus server
        check_output(args.path, "store" if args.backend == "milvus" else "folder", "--path")
    docs, _, _, es = emoji_vectors(args.split)
    build_backend(args.backend, docs, args.path, provenance={"split": args.split, "model": _jsd_digest()})
    print(f"{args.backend}: indexed {len(docs)} emoji {args.split} images ({docs.dim}-d dense, "
          f"{docs.sparse.nnz / len(docs):.1f} active terms each) -> {args.path}")
    return 0


def cmd_index_search(args) -> int:
    b = open_backend(args.backend, args.path, expect={"split": args.split, "model": _jsd_digest()})  # before encoding
    es = EmojiSearch(args.split)
    if b.n_docs != len(es):
        raise UserError(f"index {args.path} holds {b.n_docs} documents but the emoji {args.split} split has {len(es)} "
                        "images; rebuild it with `jsdlib index build`")
    d, z = es.encode_query(args.query)
    res = b.search(Vectors(d, z), args.k, args.mode, hybrid=HybridWeights(es.w1, es.w2, es.tau))
    print(f"{args.backend} {args.mode} search of {args.query!r} over the emoji {args.split} images:")
    for rank, (i, s) in enumerate(zip(res.ids[0], res.scores[0]), 1):
        if i >= 0:
            print(f"{rank:3d}  image {int(i):4d}  {float(s):9.4f}  {' | '.join(es.split.captions_of(int(i)))}")
    return 0


def add(sub) -> None:
    ix = group(sub, "index", "search back ends over the emoji images (jsdlib.index)")
    for name, helptext, func in (("build", "index the bundled JSD model's vectors of an emoji split", cmd_index_build),
                                 ("search", "search a saved index with a caption", cmd_index_search)):
        a = command(ix, name, helptext, func, shared=("threads",))
        a.add_argument("--backend", default="exact", choices=BACKENDS)
        a.add_argument("--path", required=True,
                       help="index folder (milvus: a Milvus Lite file ending in .db, or a server URI)")
        a.add_argument("--split", default="test", choices=["train", "val", "test", "all"])
        if name == "search":
            a.add_argument("--query", required=True)
            a.add_argument("--mode", default="sparse", choices=["sparse", "dense", "hybrid"])
            a.add_argument("--k", type=positive_int, default=10)
