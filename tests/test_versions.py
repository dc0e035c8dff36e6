"""The serving index version published in the shared database (bot.versions), on both engines: what
one node activates, another reads; rollback history; pruning keeps the version that served before."""

import pytest

from bot.store import BotStore
from bot.versions import DatabasePointer
from index.ingest import load_file
from index.store import IndexStore
from tests.conftest import SPEECH, HashEmbedder


@pytest.fixture
def two_nodes(db_url, tmp_path):
    """Two nodes: their own store connections, one shared index folder, the pointer in the database."""
    stores = [BotStore.open(db_url, node=name) for name in ("node-a", "node-b")]
    root = tmp_path / "shared-indexes"
    yield [IndexStore(root, keep=1, pointer=DatabasePointer(s, root, max_age=0)) for s in stores]
    for store in stores:
        store.engine.dispose()


def test_an_activation_on_one_node_is_read_by_the_other(two_nodes):
    a, b = two_nodes
    first = a.build([load_file(SPEECH)], HashEmbedder())
    second = a.build([load_file(SPEECH)], HashEmbedder())
    assert b.current() == second
    b.activate(first)  # a rollback on the other node
    assert a.current() == first and a.previous() == second
    assert a.pointer.history()[:2] == [first, second]


def test_rebuilding_never_prunes_the_version_that_served_just_before(two_nodes):
    a, _ = two_nodes
    built = [a.build([load_file(SPEECH)], HashEmbedder()) for _ in range(3)]  # keep=1
    assert a.versions() == built[1:]  # the serving one and the one before it
    assert a.previous() == built[1]
    a.activate(built[1])  # so a rollback stays possible
    assert a.current() == built[1]


def test_a_store_without_activations_reads_the_current_file(db_url, tmp_path):
    root = tmp_path / "indexes"
    version = IndexStore(root).build([load_file(SPEECH)], HashEmbedder())  # a single-machine instance
    store = BotStore.open(db_url)
    try:
        assert IndexStore(root, pointer=DatabasePointer(store, root)).current() == version
    finally:
        store.engine.dispose()
