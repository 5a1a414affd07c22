"""Vocabulary: contiguous id range per domain, reserved ids, OOV and the JSON artifact."""

import pytest

from schemas.vocabulary import FIRST_ITEM_ID, PAD_ID, SOS_ID, Vocabulary

COUNTS = {
    ("Books", "b1"): 5,
    ("Books", "b2"): 9,
    ("Books", "b3"): 1,
    ("Toys", "t1"): 2,
    ("Toys", "t2"): 2,
    ("Games", "g1"): 1,
}


def test_reserved_ids_and_contiguous_ranges():
    vocab = Vocabulary.from_counts(COUNTS)
    assert (PAD_ID, SOS_ID, FIRST_ITEM_ID) == (0, 1, 2)
    assert vocab.domain_names == ["Books", "Games", "Toys"]
    starts = [(d.start, d.end) for d in vocab.domains]
    assert starts == [(2, 6), (6, 8), (8, 11)]  # each range = OOV id + its items, no gaps
    assert vocab.num_items == 11
    for d in vocab.domains:
        ids = [vocab.item_id(d.name, item) for item in d.items]
        assert ids == list(range(d.start + 1, d.end))
        assert all(vocab.domain_of_item(i) == d.domain_id for i in range(d.start, d.end))


def test_items_ordered_by_count_then_id():
    vocab = Vocabulary.from_counts(COUNTS)
    assert vocab.domain("Books").items == ("b2", "b1", "b3")
    assert vocab.domain("Toys").items == ("t1", "t2")


def test_rare_and_unknown_items_map_to_the_domain_oov():
    vocab = Vocabulary.from_counts(COUNTS, min_item_count=2)
    books = vocab.domain("Books")
    assert books.items == ("b2", "b1")
    assert vocab.item_id("Books", "b3") == books.oov_id == vocab.item_id("Books", "never-seen")
    assert vocab.domain("Games").items == ()  # a domain keeps its OOV id even with no item left
    assert vocab.item_name(books.oov_id) == "[OOV:Books]"


def test_json_round_trip_and_lookups(tmp_path):
    vocab = Vocabulary.from_counts(COUNTS)
    path = tmp_path / "vocabulary.json"
    vocab.save(str(path))
    loaded = Vocabulary.load(str(path))
    assert loaded.to_json() == vocab.to_json()
    assert loaded.item_name(loaded.item_id("Toys", "t2")) == "t2"
    with pytest.raises(KeyError, match="unknown domain"):
        loaded.domain("Cars")
    with pytest.raises(ValueError, match="re-run components.transform"):
        Vocabulary.load(str(tmp_path / "missing.json"))


def test_item_names_table_agrees_with_item_name():
    vocab = Vocabulary.from_counts(COUNTS, min_item_count=2)
    assert vocab.item_names() == [vocab.item_name(i) for i in range(vocab.num_items)]
