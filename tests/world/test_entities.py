"""The world's long tail: entity catalogue, Zipfian documents, and the pixel scorer."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from cm3leon.world.entities import (
    ENTITY_CHANCE,
    PANEL_TEMPLATES,
    EntityCatalogue,
    entity_counts,
    entity_document,
    entity_documents,
    entity_split,
    identify_entity,
    read_cells,
    render_entity,
    score_entity,
)
from cm3leon.world.records import World, world_source
from cm3leon.world.scene import BACKGROUND_RGB, COLOURS, SHAPES


@pytest.fixture(scope="module")
def catalogue() -> EntityCatalogue:
    return EntityCatalogue(seed=0, n=300)


def test_catalogue_is_deterministic_distinct_and_far_apart(catalogue: EntityCatalogue) -> None:
    again = EntityCatalogue(seed=0, n=300)
    assert [e.to_dict() for e in again] == [e.to_dict() for e in catalogue]
    other = EntityCatalogue(seed=1, n=300)
    assert [e.name for e in other] != [e.name for e in catalogue]
    names = [e.name for e in catalogue]
    assert len(set(names)) == len(names)
    assert not set(names) & (set(COLOURS) | set(SHAPES) | {"small", "large", "mosaic"})
    codes = catalogue.codes().reshape(len(catalogue), -1)
    distances = (codes[:, None, :] != codes[None, :, :]).sum(-1)
    np.fill_diagonal(distances, 99)
    assert distances.min() >= catalogue.min_distance == 10
    assert all(len(np.unique(c)) >= 3 for c in codes)


def test_zipfian_frequency_gives_a_long_tail(catalogue: EntityCatalogue) -> None:
    counts = entity_counts(catalogue, range(3000))
    per_rank = np.array([counts.get(e.name, 0) for e in catalogue])
    assert per_rank.sum() == 3000
    assert per_rank[0] > 20 * np.median(per_rank)  # a head ...
    assert ((per_rank >= 1) & (per_rank <= 5)).sum() >= 120  # ... and a long tail
    assert (per_rank == 0).sum() >= 1  # some never appear in 3,000 documents
    # the empirical frequencies follow the law
    assert per_rank[:10].sum() / 3000 == pytest.approx(catalogue.probabilities[:10].sum(), abs=0.03)


def test_documents_name_their_entity_vary_and_keep_a_split(catalogue: EntityCatalogue) -> None:
    docs = [entity_document(catalogue, k) for k in range(60)]
    assert len({d.id for d in docs}) == 60
    for d in docs:
        text, image = d.segments[0].text, d.segments[1].image
        entity = catalogue.by_name(d.meta["entity"])
        assert catalogue.mentioned(text) == entity
        assert d.meta["split"] == entity_split(0, d.meta["index"])
        box = d.meta["box"]
        assert score_entity(image, entity, box) == {"entity_cell_acc": 1.0, "entity_match": 1.0}
        assert identify_entity(image, catalogue, box)[0] == entity
        if d.meta["view"] == "panel":  # half size on the wall, placed on the 4 px token grid
            top, left, side = box
            assert side == 16 and top % 4 == 0 and left % 4 == 0
            outside = np.ones((32, 32), bool)
            outside[top : top + side, left : left + side] = False
            assert np.abs(image[outside].astype(int) - BACKGROUND_RGB).max() < 40
            assert any(t.format(name=entity.name) == text for t in PANEL_TEMPLATES)
        else:
            assert box == [0, 0, 32]
    views = [d.meta["view"] for d in docs]
    assert 0.3 < views.count("panel") / len(views) < 0.7
    head = catalogue[0].name
    same = [d for d in docs if d.meta["entity"] == head]
    assert len(same) >= 2 and not np.array_equal(
        same[0].segments[1].image, same[1].segments[1].image
    )
    splits = [entity_split(0, k) for k in range(5000)]
    assert splits.count("train") / 5000 == pytest.approx(0.8, abs=0.03)
    assert splits.count("test") / 5000 == pytest.approx(0.1, abs=0.02)
    test_docs = list(entity_documents(catalogue, 20, split="test"))
    assert {d.meta["split"] for d in test_docs} == {"test"}


def test_scorer_separates_the_entity_from_others_noise_and_blank(
    catalogue: EntityCatalogue,
) -> None:
    rng = np.random.default_rng(0)
    for a, b in itertools.islice(itertools.permutations(range(40), 2), 300):
        wrong = score_entity(render_entity(catalogue[b]), catalogue[a])
        assert wrong["entity_match"] == 0.0 and wrong["entity_cell_acc"] <= 6 / 16
    noise = [
        score_entity(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), catalogue[i])
        for i in range(50)
    ]
    assert np.mean([s["entity_cell_acc"] for s in noise]) < 2 * ENTITY_CHANCE["entity_cell_acc"]
    assert not any(s["entity_match"] for s in noise)
    wall = np.full((32, 32, 3), BACKGROUND_RGB, np.uint8)
    assert (read_cells(wall) == -1).all()
    assert score_entity(wall, catalogue[0])["entity_cell_acc"] == 0.0


def test_scorer_survives_vq_like_blocks_and_identifies_the_entity(
    catalogue: EntityCatalogue,
) -> None:
    rng = np.random.default_rng(1)
    for rank in rng.choice(len(catalogue), 40, replace=False):
        entity = catalogue[int(rank)]
        image = render_entity(entity, 32, rng).astype(np.float32)
        blocks = image.reshape(8, 4, 8, 4, 3).mean((1, 3))  # 4 px tokens, as small_32 sees it
        blocky = np.repeat(np.repeat(blocks, 4, 0), 4, 1).astype(np.uint8)
        assert score_entity(blocky, entity)["entity_match"] == 1.0
        found, right = identify_entity(blocky, catalogue)
        assert found == entity and right >= 12
    assert identify_entity(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), catalogue)[0] is None


def test_bad_arguments_are_named(catalogue: EntityCatalogue) -> None:
    with pytest.raises(ValueError, match="n must be"):
        EntityCatalogue(n=0)
    with pytest.raises(ValueError, match="min_distance"):
        EntityCatalogue(n=10, min_distance=17)
    with pytest.raises(ValueError, match="could not draw"):
        EntityCatalogue(n=50, grid=2, min_distance=4)
    with pytest.raises(ValueError, match="multiple of the mosaic grid"):
        render_entity(catalogue[0], 30)
    with pytest.raises(ValueError, match="unknown colours"):
        score_entity(np.zeros((32, 32, 3), np.uint8), [["pink"] * 4] * 4)
    with pytest.raises(KeyError, match="no entity named 'zzz'"):
        catalogue.by_name("zzz")


def test_world_source_mixes_entity_documents_evenly() -> None:
    plain = list(world_source(n=30, seed=0))
    mixed_source = world_source(n=30, seed=0, entity_docs=10, entities=50)
    mixed = list(mixed_source)
    assert len(mixed_source) == len(mixed) == 40
    scenes = [d for d in mixed if d.meta["source"] == "world"]
    entities = [d for d in mixed if d.meta["source"] == "world-entities"]
    assert [d.id for d in scenes] == [d.id for d in plain]  # scenes unchanged
    assert len(entities) == 10 and {d.meta["split"] for d in entities} == {"train"}
    positions = [i for i, d in enumerate(mixed) if d.meta["source"] == "world-entities"]
    assert max(np.diff(positions)) <= 5  # spread, not appended
    assert [d.id for d in world_source(n=30, seed=0, entity_docs=10, entities=50)] == [
        d.id for d in mixed
    ]
    with pytest.raises(ValueError, match="entity_docs must be"):
        world_source(n=3, entity_docs=-1)
    assert [d.id for d in World(0).documents(30)] == [d.id for d in plain]
