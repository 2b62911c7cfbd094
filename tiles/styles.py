"""Layer styles, defined once as data; they produce both the Mapnik style and a MapLibre style.

Each canonical layer has one :class:`LayerStyle` (fill, stroke, width, label ...). Mapnik renders
WMS/WMTS images from it and :func:`maplibre_style` turns the same values into a MapLibre GL style
for the vector tiles, so raster and vector maps look alike. Generic layers get a default style by
geometry type. A layer may offer named alternatives (WMS ``STYLES``); ``default`` always exists.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from gisserver.errors import InvalidParameter


@dataclass(frozen=True)
class LayerStyle:
    fill: str | None = None          # polygon fill colour (#rrggbb) or None for no fill
    fill_opacity: float = 0.6
    stroke: str = "#333333"          # outline / line colour
    width: float = 1.0               # stroke width in pixels
    dash: tuple[float, ...] | None = None
    point_radius: float = 4.0        # points are drawn as circles
    label: str | None = None         # attribute shown as label
    label_color: str = "#222222"
    label_halo: str = "#ffffff"
    label_size: float = 10.0
    label_minzoom: int = 16          # labels from this web-mercator zoom on (MapLibre)
    title: str = "default"


#: label font, the one Mapnik uses too; the web app serves its glyphs at /glyphs/{fontstack}/{range}.pbf
LABEL_FONT = "DejaVu Sans Book"

_POLY = "polygon"
_LINE = "line"
_POINT = "point"

#: canonical layer -> named styles (the first is the default)
STYLES: dict[str, dict[str, LayerStyle]] = {
    "parcels": {
        "default": LayerStyle(fill="#f6e7c1", fill_opacity=0.5, stroke="#a0522d", width=0.8,
                              label="parcel_no", label_size=9, title="Parcels"),
        "land_use": LayerStyle(fill="#e9c46a", fill_opacity=0.7, stroke="#6b4f1d", width=0.6,
                               label="land_use", label_size=9, title="Parcels by land use"),
        "outline": LayerStyle(fill=None, stroke="#a0522d", width=1.0, title="Parcel boundaries"),
    },
    "buildings": {"default": LayerStyle(fill="#b5a8a0", fill_opacity=0.85, stroke="#6d625c", width=0.6,
                                        title="Buildings")},
    "roads": {"default": LayerStyle(stroke="#e07b39", width=2.5, label="name", label_minzoom=15,
                                    title="Roads")},
    "red_lines": {"default": LayerStyle(stroke="#d62828", width=1.5, dash=(6.0, 3.0), title="Red lines")},
    "drainage": {"default": LayerStyle(stroke="#457b9d", width=1.2, title="Drainage")},
    "water_supply": {"default": LayerStyle(stroke="#1d3557", width=1.2, dash=(4.0, 2.0), title="Water supply")},
    "power_lines": {"default": LayerStyle(stroke="#9d0208", width=1.4, dash=(8.0, 2.0, 2.0, 2.0),
                                          label="name", title="Power lines")},
    "telecom": {"default": LayerStyle(stroke="#6a4c93", width=1.0, dash=(2.0, 2.0), title="Telecom")},
    "trees": {"default": LayerStyle(fill="#2d6a4f", fill_opacity=0.9, stroke="#1b4332", width=0.8,
                                    point_radius=4.0, title="Trees")},
    "parks": {"default": LayerStyle(fill="#95d5b2", fill_opacity=0.6, stroke="#40916c", width=0.8,
                                    label="name", title="Parks")},
    "water_bodies": {"default": LayerStyle(fill="#a8dadc", fill_opacity=0.8, stroke="#457b9d", width=0.8,
                                           label="name", label_color="#1d3557", title="Rivers and canals")},
    "underground_works": {"default": LayerStyle(fill="#cdb4db", fill_opacity=0.4, stroke="#7b2cbf", width=1.0,
                                                dash=(3.0, 3.0), title="Underground works")},
    "zoning": {"default": LayerStyle(fill="#ffafcc", fill_opacity=0.35, stroke="#c9184a", width=1.2,
                                     label="zone_code", title="Zoning")},
    "wards": {"default": LayerStyle(fill=None, stroke="#5a189a", width=2.0, dash=(10.0, 4.0), label="name",
                                    label_color="#5a189a", label_size=14, label_minzoom=13, title="Wards")},
}

_DEFAULTS = {
    _POLY: LayerStyle(fill="#cccccc", fill_opacity=0.5, stroke="#555555", width=0.8),
    _LINE: LayerStyle(stroke="#555555", width=1.2),
    _POINT: LayerStyle(fill="#555555", fill_opacity=0.9, stroke="#222222", width=0.8),
}


def geometry_kind(geometry_type: str) -> str:
    g = (geometry_type or "").lower()
    if "polygon" in g:
        return _POLY
    if "line" in g:
        return _LINE
    if "point" in g:
        return _POINT
    return _POLY


def style_names(layer_name: str) -> list[str]:
    return list(STYLES.get(layer_name, {"default": None}))


def layer_style(layer_name: str, geometry_type: str, style: str | None = None) -> LayerStyle:
    """The named style of a layer (``None``/empty = default); an unknown name is a 400."""
    named = STYLES.get(layer_name)
    if not style or style == "default":
        if named:
            return next(iter(named.values()))
        return _DEFAULTS[geometry_kind(geometry_type)]
    if named and style in named:
        return named[style]
    raise InvalidParameter("STYLES", f"layer {layer_name!r} has no style {style!r}",
                           details={"code": "StyleNotDefined"})


def with_label(style: LayerStyle, label: str | None) -> LayerStyle:
    return replace(style, label=label)


# --- MapLibre ---------------------------------------------------------------------------------

def _dasharray(style: LayerStyle) -> list[float] | None:
    # MapLibre dashes are in line widths, Mapnik's in pixels
    if not style.dash:
        return None
    return [round(d / max(style.width, 0.1), 3) for d in style.dash]


def maplibre_layers(layer_name: str, geometry_type: str, source: str, style: str | None = None) -> list[dict]:
    """MapLibre style layers for one vector-tile layer (source-layer = layer name)."""
    s = layer_style(layer_name, geometry_type, style)
    kind = geometry_kind(geometry_type)
    common = {"source": source, "source-layer": layer_name}
    out: list[dict] = []
    if kind == _POLY:
        if s.fill:
            out.append({"id": f"{layer_name}-fill", "type": "fill", **common,
                        "paint": {"fill-color": s.fill, "fill-opacity": s.fill_opacity}})
        line_paint = {"line-color": s.stroke, "line-width": s.width}
        if _dasharray(s):
            line_paint["line-dasharray"] = _dasharray(s)
        out.append({"id": f"{layer_name}-outline", "type": "line", **common, "paint": line_paint})
    elif kind == _LINE:
        paint = {"line-color": s.stroke, "line-width": s.width}
        if _dasharray(s):
            paint["line-dasharray"] = _dasharray(s)
        out.append({"id": f"{layer_name}-line", "type": "line", **common, "paint": paint,
                    "layout": {"line-cap": "round", "line-join": "round"}})
    else:
        out.append({"id": f"{layer_name}-circle", "type": "circle", **common,
                    "paint": {"circle-color": s.fill or s.stroke, "circle-opacity": s.fill_opacity,
                              "circle-radius": s.point_radius, "circle-stroke-color": s.stroke,
                              "circle-stroke-width": s.width}})
    if s.label:
        layout = {"text-field": ["to-string", ["get", s.label]], "text-size": s.label_size,
                  "text-font": [LABEL_FONT]}
        if kind == _LINE:
            layout["symbol-placement"] = "line"
        out.append({"id": f"{layer_name}-label", "type": "symbol", **common, "minzoom": s.label_minzoom,
                    "layout": layout,
                    "paint": {"text-color": s.label_color, "text-halo-color": s.label_halo,
                              "text-halo-width": 1.2}})
    return out


def maplibre_style(layer_name: str, geometry_type: str, tilejson_url: str, title: str,
                   style: str | None = None, *, glyphs_url: str | None = None) -> dict:
    """A complete MapLibre GL style (version 8) showing one layer from its TileJSON source."""
    layers = maplibre_layers(layer_name, geometry_type, layer_name, style)
    if glyphs_url is None:
        layers = [lyr for lyr in layers if lyr["type"] != "symbol"]
    doc = {
        "version": 8,
        "name": title,
        "sources": {layer_name: {"type": "vector", "url": tilejson_url}},
        "layers": [{"id": "background", "type": "background", "paint": {"background-color": "#ffffff"}},
                   *layers],
    }
    if glyphs_url:
        doc["glyphs"] = glyphs_url
    return doc
