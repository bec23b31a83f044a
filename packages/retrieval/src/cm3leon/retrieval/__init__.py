"""cm3leon.retrieval: CM3Leon's retrieval augmentation (§2.1, Figure 9).

Modules (imported on demand; importing the package itself is free):

=================  ==============================================================
``encoder``        frozen open_clip document encoder, local checkpoints, ``clip-image``
``convert``        open_clip weights in every form (safetensors, .bin, OpenAI TorchScript) -> encoder dir
``train_clip``     the small CLIP: open_clip ``CLIP`` + ``ClipLoss`` through Composer
``strategy``       the §2.1 rules as options and pure helpers
``retriever``      ``StrategyRetriever``: one ``Searcher`` + the strategy = a Retriever
``dense``          retriever ``clip``: CLIP query parts + FAISS MIPS
``bm25``           retriever ``bm25``: Okapi BM25 over captions
``index``/``bank`` FAISS factories, merging, hash-checked memory banks
``build``          resumable, rank-sharded bank building
``augment``        retrieval-augmented token shards (Figure 9)
``cli``            ``cm3leon retrieval train-clip | build | augment | query | convert-encoder``
=================  ==============================================================
"""

__all__: list[str] = []
