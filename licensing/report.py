"""Printable compliance report: an HTML page with a map extract (inline SVG), and its PDF (WeasyPrint).

The map extract draws the parcel, the proposed footprint, the red lines near the parcel and every
geometry at fault, in the city CRS, north up, with a scale bar. No tiles and no network access:
the page prints and converts to PDF offline.
"""

from __future__ import annotations

from functools import lru_cache
from html import escape
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from shapely.geometry import shape
from shapely.ops import unary_union

MAP_SIZE = 560
MARGIN_M = 12.0

TEMPLATES = Path(__file__).resolve().parent / "templates"


@lru_cache(maxsize=1)
def _env() -> Environment:
    return Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(default=True))


def _fmt(value) -> str:
    if value is None:
        return "—"
    return f"{value:g}" if isinstance(value, int | float) else escape(str(value))


class _Frame:
    """City-CRS metres -> SVG pixels (north up)."""

    def __init__(self, bounds, size: int = MAP_SIZE):
        minx, miny, maxx, maxy = bounds
        minx, miny, maxx, maxy = minx - MARGIN_M, miny - MARGIN_M, maxx + MARGIN_M, maxy + MARGIN_M
        self.minx, self.maxy = minx, maxy
        self.scale = size / max(maxx - minx, maxy - miny)
        self.width, self.height = (maxx - minx) * self.scale, (maxy - miny) * self.scale

    def xy(self, x, y) -> str:
        return f"{(x - self.minx) * self.scale:.1f},{(self.maxy - y) * self.scale:.1f}"

    def path(self, geom) -> str:
        parts = []
        for g in getattr(geom, "geoms", [geom]):
            if g.geom_type == "Polygon":
                for ring in (g.exterior, *g.interiors):
                    parts.append("M" + " L".join(self.xy(x, y) for x, y in ring.coords) + " Z")
            elif g.geom_type in ("LineString", "LinearRing"):
                parts.append("M" + " L".join(self.xy(x, y) for x, y in g.coords))
            elif g.geom_type.startswith("Multi") or g.geom_type == "GeometryCollection":
                parts.append(self.path(g))
        return " ".join(parts)


def _shape(geojson):
    return None if not geojson else shape(geojson)


def map_svg(report: dict) -> tuple[Markup, float]:
    """(inline SVG map extract, scale-bar length in metres)."""
    parcel = _shape(report["parcel"]["geometry"])
    footprint = _shape(report["building"]["geometry"])
    frame = _Frame(unary_union([g for g in (parcel, footprint) if g is not None]).bounds)
    layers = []
    for rl in report["context"]["red_lines"]:
        g = _shape(rl["geometry"])
        if g is not None:
            clipped = g.intersection(_extent_box(frame))
            layers.append(f'<path d="{frame.path(clipped)}" fill="none" stroke="#d00" stroke-width="2"/>')
    layers.append(f'<path d="{frame.path(parcel)}" fill="#ddd" stroke="#555" stroke-width="1.5"/>')
    layers.append(f'<path d="{frame.path(footprint)}" fill="#7fa7e0" fill-opacity="0.7" stroke="#1a4d9c"/>')
    for res in report["results"]:
        g = _shape(res.get("geometry"))
        if g is not None and res["rule"] not in ("density", "far", "zone_floors", "zone_height", "floors_by_row",
                                                   "floor_vs_dtm", "floor_vs_flood"):
            layers.append(f'<path d="{frame.path(g)}" fill="url(#fault)" stroke="#b00020" stroke-width="1.5">'
                          f"<title>{escape(res['rule'])}</title></path>")
    bar_m = _scale_bar(frame)
    bar_px = bar_m * frame.scale
    y = frame.height - 12
    layers.append(f'<path d="M10,{y:.1f} h{bar_px:.1f}" stroke="#000" stroke-width="3"/>'
                  f'<text x="10" y="{y - 5:.1f}" font-size="10">{bar_m:g} m</text>'
                  f'<text x="{frame.width - 18:.1f}" y="18" font-size="12">N↑</text>')
    svg = (
        f'<svg class="map" xmlns="http://www.w3.org/2000/svg" width="{frame.width:.0f}" height="{frame.height:.0f}" '
        f'viewBox="0 0 {frame.width:.1f} {frame.height:.1f}"><defs><pattern id="fault" width="6" height="6" '
        'patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="2" height="6" fill="#b00020"/>'
        '</pattern></defs>' + "".join(layers) + "</svg>"
    )
    return Markup(svg), bar_m


def _extent_box(frame: _Frame):
    from shapely.geometry import box

    return box(frame.minx, frame.maxy - frame.height / frame.scale, frame.minx + frame.width / frame.scale, frame.maxy)


def _scale_bar(frame: _Frame) -> float:
    target = frame.width / frame.scale / 4
    for step in (1, 2, 5, 10, 20, 25, 50, 100, 200, 500, 1000):
        if step >= target:
            return float(step)
    return 1000.0


def render_html(report: dict) -> str:
    template = _env().get_template("check_report.html")
    svg, bar_m = map_svg(report)
    return template.render(r=report, p=report["parcel"], b=report["building"], svg=svg, fmt=_fmt, scale_m=f"{bar_m:g}")


def render_pdf(report: dict) -> bytes:
    """The same page as PDF (WeasyPrint renders offline: no external resources are referenced)."""
    from weasyprint import HTML

    return HTML(string=render_html(report)).write_pdf()
