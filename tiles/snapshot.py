"""A per-process copy of the layer catalogue for the tile hot path.

A cache hit should not wait for the database: the layer's data version and access level come
from this snapshot, re-read (one query for all layers) when it is older than ``ttl`` seconds.
So an edit or an access change reaches tiles at most ``ttl`` seconds late; ``ttl=0`` reads the
catalogue on every request. An unknown name triggers one early refresh (a new layer is seen at
once), rate-limited so that requests for missing layers cannot hammer the database.
"""

from __future__ import annotations

import threading
import time

from sqlalchemy.engine import Engine

from gisserver.errors import NotFound
from gisserver.security import Principal
from layers.catalogue import LayerInfo, get_layer, list_layers


class CatalogueSnapshot:
    def __init__(self, engine: Engine, ttl: float = 1.0):
        self.engine = engine
        self.ttl = ttl
        self._layers: dict[str, LayerInfo] = {}
        self._loaded = float("-inf")
        self._lock = threading.Lock()

    def _refresh(self) -> None:
        with self.engine.connect() as conn:
            layers = {info.name: info for info in list_layers(conn)}
        with self._lock:
            self._layers, self._loaded = layers, time.monotonic()

    def invalidate(self) -> None:
        """Forget the copy (after an access change in this process; other workers follow within ttl)."""
        with self._lock:
            self._loaded = float("-inf")

    def layer(self, name: str, principal: Principal | None) -> LayerInfo:
        """The layer as of at most ``ttl`` seconds ago; unreadable or unknown -> NotFound."""
        if self.ttl <= 0:
            with self.engine.connect() as conn:
                return get_layer(conn, name, principal)
        age = time.monotonic() - self._loaded
        if age > self.ttl:
            self._refresh()
        info = self._layers.get(name)
        if info is None and age > min(self.ttl, 0.5):
            self._refresh()
            info = self._layers.get(name)
        if info is None or (principal is not None and not info.readable_by(principal)):
            raise NotFound(f"no layer named {name!r}")
        return info
