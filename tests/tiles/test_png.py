"""The RGBA PNG encoder of tiles.render writes the same pixels as Mapnik's own encoder."""

from __future__ import annotations

import numpy as np

from gisserver.security import ANONYMOUS
from tests.tiles.images import decode_image
from tests.tiles.test_wms import box_in
from tiles import render, wms
from tiles.snapshot import CatalogueSnapshot


def test_png_rgba_equals_mapnik_png32(app, ben_thanh):
    engine = app.extensions["gisserver"].engine
    layers = wms.cached_map_layers(engine, CatalogueSnapshot(engine, ttl=0), ANONYMOUS, ("parcels", "roads", "trees"),
                                   ("", "", ""), None)
    mapnik = render.mapnik_module()
    db = render.DbParams.from_url(engine.url)
    for width, height, transparent in ((256, 256, True), (301, 173, False)):
        m = render._get_map(tuple(layers), 3857, db, width, height)
        m.background = mapnik.Color(0, 0, 0, 0) if transparent else mapnik.Color("#ffffff")
        m.zoom_to_box(mapnik.Box2d(*box_in(3857)))
        image = mapnik.Image(width, height)
        mapnik.render(m, image)
        reference = decode_image(image.to_string("png32"))
        ours = render.encode_image(image, render.FORMATS["image/png"])
        assert ours[:8] == render.PNG_SIGNATURE and ours[25] == 6  # RGBA
        decoded = decode_image(ours)
        assert decoded.shape == (4, height, width)
        assert np.array_equal(decoded, reference)
        assert (decoded[3] > 0).any() and (decoded[3] < 255).any() == transparent  # drawn; alpha kept
