"""Tile cache on disk, keyed by layer data version, with per-tile invalidation of edits.

Layout: ``<root>/<namespace>/<z>/<x>/<y>.<ext>`` where the namespace names the service, layer,
style and tile matrix set (e.g. ``mvt/parcels``). Each file is a 28-byte header (magic, the layer
``data_version`` the tile was built from, a 16-byte content hash) followed by the tile bytes;
files are written to a temporary name and renamed, so readers never see half a tile and several
workers can share the folder.

Why disk: a hit is one ``open``/``read`` of a small file (served from the page cache), no
database round trip; measured in ``bench/tiles_cache.py`` against PostgreSQL storage.

Invalidation: a tile built at version ``v`` is current for version ``v``. When the layer moves on
to ``V > v`` the tile is still valid if every version in ``(v, V]`` has a recorded change area
(:func:`TileCache.record_change`, lon/lat bbox, written by the code that edits the layer) and none
of them touches the tile (plus a margin for symbols and labels): the header is then moved to ``V``
without rebuilding. Otherwise the tile is rebuilt; its ETag is the hash of its bytes, so a tile
whose bytes did not change keeps its ETag and clients still get ``304 Not Modified``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from layers.catalogue import LayerInfo

_MAGIC = b"GTC1"
_HEADER = struct.Struct(">4sQ16s")
#: tiles are also invalidated by changes this fraction of a tile width beyond their edges
CHANGE_MARGIN = 0.25


@dataclass(frozen=True)
class CachedTile:
    data: bytes
    version: int
    digest: str
    hit: bool = True

    @property
    def etag(self) -> str:
        return self.digest


def content_digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


def _intersects(a, b) -> bool:
    return not (a[2] < b[0] or a[0] > b[2] or a[3] < b[1] or a[1] > b[3])


class TileCache:
    def __init__(self, root: Path | str):
        self.root = Path(root)
        self._root = str(self.root)
        self._changes: dict[str, tuple[tuple[int, int], dict[int, list]]] = {}
        self._lock = threading.Lock()

    # --- files ----------------------------------------------------------------------------
    def path(self, namespace: str, z: int, x: int, y: int, ext: str) -> Path:
        return self.root / namespace / str(z) / str(x) / f"{y}.{ext}"

    def read(self, namespace: str, z: int, x: int, y: int, ext: str) -> CachedTile | None:
        # the hot path of a hit: plain string paths (pathlib costs more than the read)
        try:
            with open(f"{self._root}/{namespace}/{z}/{x}/{y}.{ext}", "rb") as fh:
                raw = fh.read()
        except (FileNotFoundError, NotADirectoryError):
            return None
        if len(raw) < _HEADER.size:
            return None
        magic, version, digest = _HEADER.unpack_from(raw)
        if magic != _MAGIC:
            return None
        return CachedTile(raw[_HEADER.size:], version, digest.hex())

    def write(self, namespace: str, z: int, x: int, y: int, ext: str, version: int, data: bytes,
              digest: bytes | None = None) -> CachedTile:
        digest = digest or content_digest(data)
        target = self.path(namespace, z, x, y, ext)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(_HEADER.pack(_MAGIC, version, digest))
                fh.write(data)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return CachedTile(data, version, digest.hex(), hit=False)

    # --- the one entry point ----------------------------------------------------------------
    def get_or_build(self, namespace: str, layers: tuple[str, ...], version: int, z: int, x: int, y: int,
                     ext: str, lonlat_bounds: Callable[[], tuple[float, float, float, float]],
                     build: Callable[[], bytes]) -> CachedTile:
        """The cached tile if still valid for ``version``, else ``build()`` it and store it.

        ``layers`` are the layers the tile shows (their change logs are checked);
        ``lonlat_bounds()`` gives the tile's lon/lat bounds (only computed when a tile is outdated).
        """
        cached = self.read(namespace, z, x, y, ext)
        if cached is not None:
            if cached.version == version:
                return cached
            if cached.version < version and self._unaffected(layers, cached.version, version, lonlat_bounds()):
                self.write(namespace, z, x, y, ext, version, cached.data, bytes.fromhex(cached.digest))
                return CachedTile(cached.data, version, cached.digest, hit=True)
        data = build()
        return self.write(namespace, z, x, y, ext, version, data)

    # --- change log ------------------------------------------------------------------------
    def _log_path(self, layer: str) -> Path:
        return self.root / "_changes" / f"{layer}.jsonl"

    def record_change(self, layer: str, version: int, lonlat_bbox: tuple[float, float, float, float] | None) -> None:
        """Record that ``layer`` (its change key, ``name.id``) reached ``version`` by a change
        inside ``lonlat_bbox``.

        ``None`` means "anywhere" (a full reload): every tile is rebuilt; an empty box means that
        no geometry changed (e.g. an append of no features): no tile is rebuilt.
        """
        path = self._log_path(layer)
        path.parent.mkdir(parents=True, exist_ok=True)
        box = None if lonlat_bbox is None else [float(v) for v in lonlat_bbox]
        line = json.dumps({"version": int(version), "bbox": box})
        # one O_APPEND write per line: safe with several writers
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)

    def _change_log(self, layer: str) -> dict[int, list]:
        path = self._log_path(layer)
        try:
            st = path.stat()
        except FileNotFoundError:
            return {}
        stamp = (st.st_mtime_ns, st.st_size)  # the size too: two appends may share a timestamp
        with self._lock:
            hit = self._changes.get(layer)
        if hit and hit[0] == stamp:
            return hit[1]
        log: dict[int, list] = {}
        for line in path.read_text().splitlines():
            try:
                entry = json.loads(line)
                log.setdefault(int(entry["version"]), []).append(entry["bbox"])
            except (ValueError, KeyError, TypeError):
                continue  # a torn line from a crash: treated as an unknown change
        with self._lock:
            self._changes[layer] = (stamp, log)
        return log

    def _unaffected(self, layers: tuple[str, ...], old: int, new: int, bounds) -> bool:
        if len(layers) != 1:
            return False  # combined versions of several layers: cannot attribute the change
        log = self._change_log(layers[0])
        w, h = bounds[2] - bounds[0], bounds[3] - bounds[1]
        area = (bounds[0] - w * CHANGE_MARGIN, bounds[1] - h * CHANGE_MARGIN,
                bounds[2] + w * CHANGE_MARGIN, bounds[3] + h * CHANGE_MARGIN)
        for v in range(old + 1, new + 1):
            boxes = log.get(v)
            if not boxes:
                return False
            for box in boxes:
                if box is None or (box and _intersects(box, area)):
                    return False
        return True

    def purge(self, namespace_prefix: str) -> None:
        target = self.root / namespace_prefix
        if target.is_dir():
            shutil.rmtree(target, ignore_errors=True)


def record_layer_change(var_dir: Path | str, layer: LayerInfo, version: int,
                        lonlat_bbox: tuple[float, float, float, float] | None) -> None:
    """For code that edits a layer: after ``bump_version`` returned ``version``, record the lon/lat
    box of the edit so that only the tiles it touches are rebuilt. ``layer`` is the layer's
    ``LayerInfo`` (the change log is per catalogue entry); ``var_dir`` is ``settings.var_dir``."""
    TileCache(Path(var_dir) / "tiles").record_change(f"{layer.name}.{layer.id}", version, lonlat_bbox)


def record_changes_of(engine: Engine, var_dir: Path | str) -> None:
    """Make every layer edit committed through ``engine`` record its change area (as reported to
    ``layers.catalogue.bump_version``) in the tile cache under ``var_dir``; called once per engine
    by the processes that edit layers (the web app, the CLI)."""
    from layers.catalogue import on_layer_change

    on_layer_change(engine, _ChangeRecorder(Path(var_dir)))


@dataclass(frozen=True)
class _ChangeRecorder:
    var_dir: Path

    def __call__(self, layer: LayerInfo, version: int, lonlat_bbox) -> None:
        record_layer_change(self.var_dir, layer, version, lonlat_bbox)
