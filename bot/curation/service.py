"""The curation state one worker answers with, kept in step with the database.

``Curation.refresh`` runs before every message (the pipeline's refreshers): one read of the version
number; when another worker (or this one) changed anything, the sensitive words, keyword replies, official
answers, settings and synonym groups are read again and rebuilt. Writes go through the store and are
audited here, with who made them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import numpy as np

from bot.curation.faq import FaqMatcher
from bot.curation.keywords import KeywordReplies, menu_from_setting
from bot.curation.sensitive import SensitiveWords
from bot.curation.store import CurationStore, Faq, Snapshot
from bot.curation.synonyms import SynonymLayer, groups_from_setting
from bot.store import BotStore
from index.store import LoadedIndex

log = logging.getLogger(__name__)


class Curation:
    def __init__(self, store: CurationStore, bot_store: BotStore, index: Callable[[], LoadedIndex],
                 layer: SynonymLayer, feedback_ttl: float = 1800.0) -> None:
        self.store = store
        self.bot_store = bot_store
        self._index = index
        self.layer = layer
        self.feedback_ttl = feedback_ttl
        self._lock = threading.Lock()
        self.version = -1
        self.words = SensitiveWords()
        self.keywords = KeywordReplies([])
        self.faqs = FaqMatcher([])
        self.settings: dict[str, str] = {}
        self.menu: dict[str, str] = {}

    # ------------------------------------------------------------------ cache

    def refresh(self) -> None:
        """Bring this worker's curation up to date (cheap when nothing changed)."""
        version = self.store.version()
        if version == self.version:
            return
        with self._lock:
            if version != self.version:
                self._load(self.store.snapshot())

    def _load(self, snap: Snapshot) -> None:
        index = self._index()
        dimension = index.searcher.embedder.dimension
        self.words = SensitiveWords([(int(w["id"]), w["word"], w["action"]) for w in snap.words])
        self.keywords = KeywordReplies(snap.keywords)
        self.faqs = FaqMatcher([f for f in snap.faqs if f.model in (None, index.searcher.embedder.name)]
                               + [_without_vectors(f) for f in snap.faqs
                                  if f.model not in (None, index.searcher.embedder.name)], dimension)
        self.settings = snap.settings
        self.menu = menu_from_setting(snap.settings.get("menu"))
        groups = groups_from_setting(snap.settings.get("synonyms"))
        if groups != self.layer.groups or self.version < 0:
            self.layer.set_groups(groups)
            self.layer.apply(index)
        self.version = snap.version
        log.info("curation version %s: %s official answers, %s sensitive words, %s keyword replies, "
                 "%s synonym groups", snap.version, len(self.faqs), self.words.size,
                 len(snap.keywords), len(groups))

    def on_index_loaded(self, index: LoadedIndex) -> None:
        """A newly loaded index gets the admin's synonym groups too."""
        self.layer.apply(index)

    # -------------------------------------------------------------- embedding

    def question_text(self, question: str) -> str:
        """A question as the matcher embeds it: normalised, in the documents' words (as the search does)."""
        return self._index().searcher.rewrite(question).text

    def question_vector(self, question: str) -> np.ndarray:
        searcher = self._index().searcher
        return searcher.query_vector(searcher.rewrite(question).text)

    def embed_faq(self, faq: Faq) -> Faq:
        """``faq`` with the vectors of its phrasings, for close matches."""
        return self.embed_faqs([faq])[0]

    def embed_faqs(self, faqs: list[Faq], batch: int = 64) -> list[Faq]:
        """The vectors of every phrasing of ``faqs``, embedded in batches (an import of 1,000 pairs)."""
        searcher = self._index().searcher
        texts = [searcher.rewrite(p).text for f in faqs for p in (f.question, *f.alternatives)]
        vectors = np.zeros((len(texts), searcher.embedder.dimension), dtype=np.float32)
        for start in range(0, len(texts), batch):
            vectors[start:start + batch] = searcher.embedder.encode_queries(texts[start:start + batch])
        at = 0
        for f in faqs:
            n = 1 + len(f.alternatives)
            f.vectors, f.model = vectors[at:at + n].copy(), searcher.embedder.name
            at += n
        return faqs

    # ------------------------------------------------------------------ audit

    def audit(self, who: str, action: str, target: str | None, result: str) -> None:
        self.bot_store.audit(who, action, target, result)


def _without_vectors(faq: Faq) -> Faq:
    """An answer embedded by another model matches exactly only (until it is saved again)."""
    faq.vectors = None
    return faq
