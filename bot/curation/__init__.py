"""Curation for admins: official answers, synonyms, sensitive words, keyword replies and the welcome,
feedback and the unanswered queue.

- ``store``      the tables (on ``bot.db.metadata``) and the one version number every change bumps;
- ``service``    ``Curation``: one worker's cached state, refreshed when the version moves;
- ``responders`` the pipeline's curation responders and finishers (``bot.pipeline`` lists the order);
- ``faq``, ``sensitive``, ``keywords``, ``synonyms``: matching and file formats, no Flask;
- ``unanswered`` the queue of questions the bot could not answer, grouped by similarity;
- ``ops``        changes as both front ends make them (checked, stored, audited);
- ``admin``      the ``/admin/api`` routes; ``console`` the console's 管理 pages.
"""

from __future__ import annotations

from flask import Flask, current_app

from bot.curation.responders import Responders
from bot.curation.service import Curation
from bot.curation.store import CurationStore
from bot.curation.synonyms import SynonymLayer


def init_app(app: Flask) -> Responders:
    """Create this app's curation (tables on first use) and register its admin routes."""
    from bot.curation import admin, console

    engine = app.extensions["engine"]
    store = CurationStore(engine.bot_store.engine)
    curation = Curation(store, engine.bot_store, engine.current_index, SynonymLayer(engine.synonyms()),
                        feedback_ttl=float(app.config["USER_STATE_TTL_SECONDS"]))
    engine.on_load.append(curation.on_index_loaded)
    responders = Responders(curation)
    app.extensions["curation"] = curation
    app.register_blueprint(admin.bp)
    console.init_app(app)
    return responders


def get_curation() -> Curation:
    return current_app.extensions["curation"]
