"""The shipped bank configs for big banks (configs/retrieval/bank_{1m,100m,1b}.yaml).

Each one must validate as a ``RetrievalConfig``, name a FAISS factory that FAISS builds,
trains, fills, merges (the multi-rank build) and searches with the stated search
parameters at a scaled-down size (same structure, small ``nlist``), train on a sample
within FAISS's rule of thumb (30 to 256 vectors per list), and state in its header the
memory it needs, which must equal :func:`index_bytes` (the formula below), itself checked
against the bytes FAISS actually serialises for the scaled-down index.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from cm3leon.core.config import load_config
from cm3leon.retrieval.config import RetrievalConfig
from cm3leon.retrieval.index import (
    DEFAULT_MAX_INDEX_BYTES,
    add_vectors,
    configure_search,
    make_index,
    merge_indexes,
    reconstruct,
    train_index,
)

faiss = pytest.importorskip("faiss")

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = {name: ROOT / "configs" / "retrieval" / f"bank_{name}.yaml" for name in ("1m", "100m", "1b")}
DIM = 512  # ViT-B-32 CLIP embeddings: what the headers' numbers are for
GIB = 1 << 30

_FACTORY = re.compile(
    r"^(?:OPQ(?P<opq_m>\d+)_(?P<opq_d>\d+),)?IVF(?P<nlist>\d+)(?:_HNSW(?P<hnsw>\d+))?,"
    r"(?P<enc>Flat|PQ(?P<pq_m>\d+)(?:x(?P<bits>\d+))?(?P<fs>fsr?)?)(?P<refine>,RFlat)?$"
)


@dataclass(frozen=True)
class Structure:
    """The parts of a factory string that set its size."""

    nlist: int
    dim_ivf: int  # dimension after the OPQ rotation
    opq: bool
    hnsw_m: int  # 0: flat coarse quantizer
    code_bytes: float  # per vector, in the inverted lists
    codebook_floats: int
    refine_flat: bool


def parse(factory: str, dim: int = DIM) -> Structure:
    m = _FACTORY.match(factory)
    assert m, f"factory {factory!r} is outside the structures this formula knows"
    dim_ivf = int(m["opq_d"]) if m["opq_d"] else dim
    if m["enc"] == "Flat":
        code, codebook = 4.0 * dim_ivf, 0
    else:
        bits = int(m["bits"] or 8)
        code, codebook = int(m["pq_m"]) * bits / 8, (1 << bits) * dim_ivf
    return Structure(int(m["nlist"]), dim_ivf, bool(m["opq_m"]), int(m["hnsw"] or 0), code, codebook,
                     bool(m["refine"]))


def index_bytes(factory: str, n: int, dim: int = DIM) -> dict[str, float]:
    """Bytes of the index as a bank holds it after ``configure_search`` (RAM = file size).

    Per vector: its code, its 8-byte id in the inverted list, 8 bytes of the direct map
    that ``configure_search`` builds (``reconstruct`` for the near-duplicate rule), and with
    ``RFlat`` its float32 vector. Once: coarse centroids (float32), the HNSW graph over them
    (int32 links: 2M on level 0, M per upper level, expected 1/(M-1) upper levels; an int32
    level and an int64 offset per node), the PQ codebooks and the OPQ matrix.
    """
    s = parse(factory, dim)
    per_vector = s.code_bytes + 8 + 8 + (4 * dim if s.refine_flat else 0)
    graph = s.nlist * (4 * (2 * s.hnsw_m + s.hnsw_m / (s.hnsw_m - 1)) + 12) if s.hnsw_m else 0
    once = 4 * s.nlist * s.dim_ivf + graph + 4 * s.codebook_floats + (4 * dim * s.dim_ivf if s.opq else 0)
    return {"total": n * per_vector + once, "per_vector": per_vector, "once": once}


@dataclass(frozen=True)
class Header:
    documents: int
    index_gib: float
    per_vector: float
    train_gib: float


def read_header(path: Path) -> Header:
    head = path.read_text().split("\nbank:")[0]

    def number(pattern: str) -> float:
        m = re.search(pattern, head)
        assert m, f"{path}: header has no line matching {pattern!r}"
        return float(m.group(1).replace(",", ""))

    return Header(int(number(r"#\s+documents: ([\d,]+)")), number(r"#\s+index: ([\d.]+) GiB"),
                  number(r"#\s+index: [\d.]+ GiB = ([\d.]+) B/vector"), number(r"#\s+training sample: ([\d.]+) GiB"))


def _bank(path: Path):
    cfg = load_config(RetrievalConfig, path)
    assert cfg.bank is not None, f"{path}: no bank section"
    return cfg.bank


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_config_validates_and_states_its_memory(name: str) -> None:
    path = CONFIGS[name]
    bank = _bank(path)
    header = read_header(path)
    assert header.documents == {"1m": 10**6, "100m": 10**8, "1b": 10**9}[name]
    size = index_bytes(bank.index.factory, header.documents)
    assert header.index_gib == pytest.approx(size["total"] / GIB, rel=0.005, abs=0.006), (
        f"{path}: header states {header.index_gib} GiB, the formula gives {size['total'] / GIB:.3f}")
    assert header.per_vector == pytest.approx(size["total"] / header.documents, abs=0.06)
    assert header.train_gib == pytest.approx(bank.index.train_size * DIM * 4 / GIB, abs=0.006)
    nlist = parse(bank.index.factory).nlist
    assert 30 * nlist <= bank.index.train_size <= 256 * nlist, (
        f"{path}: train_size {bank.index.train_size} is outside 30..256 x nlist ({nlist})")
    assert bank.index.search_params.strip(), f"{path}: no search parameters"
    if size["total"] > DEFAULT_MAX_INDEX_BYTES:  # loading it needs a raised byte limit: the header must say so
        assert "CM3LEON_MAX_INDEX_BYTES" in path.read_text().split("\nbank:")[0]


def _scaled_down(factory: str, nlist: int) -> str:
    return re.sub(r"IVF\d+", f"IVF{nlist}", factory)


def _quick(index):
    """Fewer k-means / OPQ iterations: the structure, not the training quality, is under test."""
    if isinstance(index, faiss.IndexPreTransform):
        opq = faiss.downcast_VectorTransform(index.chain.at(0))
        opq.niter, opq.niter_pq_0, opq.niter_pq = 2, 2, 2
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        ivf.cp.niter = 3
        pq = getattr(faiss.downcast_index(ivf), "pq", None)
        if pq is not None:
            pq.cp.niter = 3
    return index


def _unit(n: int, rng: np.random.Generator) -> np.ndarray:
    x = rng.standard_normal((n, DIM), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


_BUILT: dict[str, tuple] = {}


def _build_scaled_down(factory: str) -> tuple:
    """``factory`` trained, filled as two rank shards and merged (once per structure)."""
    if factory not in _BUILT:
        faiss.omp_set_num_threads(1)
        rng = np.random.default_rng(0)
        index = train_index(_quick(make_index(DIM, factory)), _unit(1024, rng))
        base = _unit(2000, rng)
        shards = [faiss.clone_index(index), faiss.clone_index(index)]
        add_vectors(shards[0], base[:1200])
        add_vectors(shards[1], base[1200:])
        _BUILT[factory] = (merge_indexes(shards), base)
    return _BUILT[factory]


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_factory_builds_merges_and_searches_scaled_down(name: str) -> None:
    """The shipped factory at nlist 16: trained, filled as two rank shards, merged, searched
    with the shipped parameters, its serialised size as the formula says."""
    bank = _bank(CONFIGS[name])
    factory = _scaled_down(bank.index.factory, 16)
    merged, base = _build_scaled_down(factory)
    configure_search(merged, bank.index.search_params)
    assert merged.ntotal == len(base)
    _, rows = merged.search(base[:8], 5)
    assert (rows[:, 0] == np.arange(8)).mean() >= 0.75, f"{factory}: vectors do not find themselves: {rows[:, 0]}"
    assert reconstruct(merged, rows[:, 0]).shape == (8, DIM)
    actual = faiss.serialize_index(merged).nbytes
    expected = index_bytes(factory, len(base))["total"]
    assert actual == pytest.approx(expected, rel=0.03), f"{factory}: FAISS {actual} bytes, formula {expected:.0f}"


def test_formula_tracks_faiss_across_encodings() -> None:
    """The formula against FAISS for each encoding the configs may use (small, flat quantizer)."""
    faiss.omp_set_num_threads(1)
    rng = np.random.default_rng(1)
    sample, base = _unit(512, rng), _unit(2000, rng)
    for factory in ("IVF8,Flat", "IVF8,PQ16", "IVF8,PQ32x4fs,RFlat", "IVF8_HNSW16,Flat"):
        index = train_index(_quick(make_index(DIM, factory)), sample)
        add_vectors(index, base)
        configure_search(index, "nprobe=2")
        actual = faiss.serialize_index(index).nbytes
        assert actual == pytest.approx(index_bytes(factory, len(base))["total"], rel=0.03), factory


def test_formula_rejects_unknown_structures() -> None:
    with pytest.raises(AssertionError, match="outside the structures"):
        parse("HNSW32")


@pytest.mark.parametrize("factory", ["IVF8,PQ8x4fs,RFlat", "PQ8x4fs,Refine(SQ8)", "IVF8,Flat,RFlat"])
def test_merging_rank_shards_of_a_reranking_index_equals_one_index(factory: str) -> None:
    """A multi-rank build of a bank_1m-style factory: FAISS's IndexRefine has no merge_from."""
    faiss.omp_set_num_threads(1)
    rng = np.random.default_rng(2)
    vecs = rng.standard_normal((1000, 16), dtype=np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    single = train_index(make_index(16, factory), vecs)
    shards = [faiss.clone_index(single), faiss.clone_index(single)]
    add_vectors(shards[0], vecs[:600])
    add_vectors(shards[1], vecs[600:])
    add_vectors(single, vecs)
    merged = merge_indexes(shards)
    assert merged.ntotal == 1000
    for index in (merged, single):
        configure_search(index, "k_factor_rf=4" if "IVF" not in factory else "nprobe=8,k_factor_rf=4")
    np.testing.assert_array_equal(merged.search(vecs[:100], 10)[1], single.search(vecs[:100], 10)[1])
    np.testing.assert_allclose(reconstruct(merged, np.arange(990, 1000)), reconstruct(single, np.arange(990, 1000)))


@pytest.mark.parametrize("factory", ["IVF8,PQ8", "OPQ8_32,IVF8_HNSW16,PQ8"])
def test_train_index_skips_polysemous_training(factory: str) -> None:
    """FAISS's polysemous training (simulated annealing over 64 x 256 centroids for the
    configs' PQ64) serves only Hamming pre-filtering, which banks never use; it made the
    100M/1B structures train for minutes even at toy sizes."""
    faiss.omp_set_num_threads(1)
    index = _quick(make_index(32, factory))
    ivfpq = faiss.downcast_index(faiss.extract_index_ivf(index))
    assert ivfpq.do_polysemous_training  # FAISS's default for an IVF-PQ factory
    train_index(index, np.random.default_rng(3).standard_normal((600, 32), dtype=np.float32))
    assert index.is_trained and not ivfpq.do_polysemous_training


@pytest.mark.parametrize("factory", ["PQ8", "OPQ8_32,PQ8", "PQ4x4fs,Refine(PQ8)"])
def test_train_index_skips_polysemous_training_of_flat_pq_codes(factory: str) -> None:
    """Flat PQ codes (a compressed bank without inverted lists: no ids, no direct map) get
    the same treatment, behind an OPQ rotation or as a refinement stage too: FAISS's
    ``IndexPQ`` trains polysemously by default (11 minutes for ``PQ64`` on 40k vectors)."""
    faiss.omp_set_num_threads(1)
    index = make_index(32, factory)
    pqs = [p for p in _all_parts(index) if isinstance(p, faiss.IndexPQ)]
    assert pqs and all(p.do_polysemous_training for p in pqs)  # FAISS's default
    train_index(index, np.random.default_rng(4).standard_normal((600, 32), dtype=np.float32))
    assert index.is_trained and not any(p.do_polysemous_training for p in pqs)


def _all_parts(index) -> list:
    index = faiss.downcast_index(index)
    if isinstance(index, faiss.IndexPreTransform):
        return [index, *_all_parts(index.index)]
    if isinstance(index, faiss.IndexRefine):
        return [index, *_all_parts(index.base_index), *_all_parts(index.refine_index)]
    return [index]
