// The layers panel: which layers the caller may read (OGC API collections), their MapLibre
// layers (from the maps blueprint's /styles/{layer}.json, tiles through TileJSON), legends
// derived from the same paint values, labels drawn with the server's own glyphs, the building
// extrusion for the 3D view and the raster products (DTM, hillshade, nDSM) with their legends.
import { getJSON } from "./api.js";
import { t } from "./i18n.js";

/** Draw order, bottom to top, and which layers start switched on. */
export const LAYER_ORDER = [
  ["zoning", false],
  ["water_bodies", true],
  ["parks", true],
  ["parcels", true],
  ["underground_works", false],
  ["roads", true],
  ["red_lines", true],
  ["drainage", false],
  ["water_supply", false],
  ["telecom", false],
  ["power_lines", true],
  ["trees", false],
  ["buildings", true],
  ["wards", true],
];

/** Label glyphs are served by our server (built from DejaVu Sans, which covers Vietnamese). */
export const GLYPHS_URL = `${window.location.origin}/glyphs/{fontstack}/{range}.pbf`;

export const EXTRUSION_ID = "buildings-3d";

/** Readable collections of the OGC API: {name: {title, extent}}. */
export async function readableLayers() {
  const doc = await getJSON("/ogc/collections?f=json");
  const out = {};
  for (const c of doc.collections || []) {
    out[c.id] = { title: c.title, titleVi: c.title_vi, bbox: c.extent?.spatial?.bbox?.[0] || null };
  }
  return out;
}

/**
 * Add one layer's style (sources + layers) to the map; returns the MapLibre layer ids added, the
 * ids of its label (symbol) layers among them, and its legend entries.
 */
export async function addStyledLayer(map, name, visible) {
  const style = await getJSON(`/styles/${encodeURIComponent(name)}.json?glyphs=${encodeURIComponent(GLYPHS_URL)}`);
  for (const [id, source] of Object.entries(style.sources || {})) {
    if (!map.getSource(id)) map.addSource(id, source);
  }
  const ids = [];
  const labels = [];
  const legend = [];
  for (const layer of style.layers || []) {
    if (layer.type === "background") continue;
    map.addLayer({ ...layer, layout: { ...(layer.layout || {}), visibility: visible ? "visible" : "none" } });
    ids.push(layer.id);
    if (layer.type === "symbol") labels.push(layer.id);
    else legend.push(legendEntry(layer));
  }
  return { ids, labels, legend };
}

/** Buildings as LoD1 blocks: extrude footprints by their (LiDAR or cadastral) height. */
export function addBuildingExtrusion(map) {
  if (!map.getSource("buildings") || map.getLayer(EXTRUSION_ID)) return;
  map.addLayer({
    id: EXTRUSION_ID,
    type: "fill-extrusion",
    source: "buildings",
    "source-layer": "buildings",
    layout: { visibility: "none" },
    paint: {
      "fill-extrusion-color": [
        "interpolate", ["linear"], ["coalesce", ["get", "height"], 3],
        3, "#d9cfc7", 12, "#b5a8a0", 25, "#8d7f76", 45, "#6d625c",
      ],
      "fill-extrusion-height": ["coalesce", ["get", "height"], ["*", ["coalesce", ["get", "floors"], 1], 3.3]],
      "fill-extrusion-base": 0,
      "fill-extrusion-opacity": 0.9,
      "fill-extrusion-vertical-gradient": true,
    },
  });
}

function legendEntry(layer) {
  const p = layer.paint || {};
  if (layer.type === "fill") return { kind: "fill", color: p["fill-color"], opacity: p["fill-opacity"] ?? 1 };
  if (layer.type === "line") {
    return { kind: "line", color: p["line-color"], width: p["line-width"] ?? 1, dash: p["line-dasharray"] || null };
  }
  if (layer.type === "circle") return { kind: "circle", color: p["circle-color"], stroke: p["circle-stroke-color"] };
  return { kind: "other", color: "#999" };
}

/** A small SVG swatch for the legend entries of one layer. */
export function legendSwatch(entries) {
  const fill = entries.find((e) => e.kind === "fill");
  const line = entries.find((e) => e.kind === "line");
  const circle = entries.find((e) => e.kind === "circle");
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("width", "28");
  svg.setAttribute("height", "16");
  svg.setAttribute("class", "swatch");
  svg.setAttribute("aria-hidden", "true");
  const color = (c) => (typeof c === "string" ? c : "#888");
  if (fill) {
    const r = document.createElementNS(ns, "rect");
    Object.entries({ x: 2, y: 2, width: 24, height: 12, rx: 2, fill: color(fill.color),
      "fill-opacity": fill.opacity, stroke: line ? color(line.color) : "none", "stroke-width": 1.5 })
      .forEach(([k, v]) => r.setAttribute(k, v));
    svg.append(r);
  } else if (line) {
    const l = document.createElementNS(ns, "line");
    Object.entries({ x1: 2, y1: 8, x2: 26, y2: 8, stroke: color(line.color),
      "stroke-width": Math.max(1.5, line.width), "stroke-linecap": "round" })
      .forEach(([k, v]) => l.setAttribute(k, v));
    if (line.dash) l.setAttribute("stroke-dasharray", line.dash.map((d) => d * Math.max(1.5, line.width)).join(" "));
    svg.append(l);
  } else if (circle) {
    const c = document.createElementNS(ns, "circle");
    Object.entries({ cx: 14, cy: 8, r: 5, fill: color(circle.color), stroke: color(circle.stroke) })
      .forEach(([k, v]) => c.setAttribute(k, v));
    svg.append(c);
  }
  return svg;
}

export function layerLabel(name, info) {
  const key = `layer.${name}`;
  const label = t(key);
  return label === key ? info?.title || name : label;
}

/** Raster catalogue endpoints the server may offer (the first one it has is used). */
const RASTER_LISTS = ["/api/rasters", "/rasters", "/raster"];
const RASTER_TILE = "/raster/{name}/{z}/{x}/{y}.{ext}";

/**
 * Raster products for the panel: the DTM as a hillshade and the latest flood depth, when the
 * server lists its rasters and serves raster tiles. Returns {hillshade, flood}: raster names or null.
 */
export async function rasterProducts(caps) {
  const list = caps.first(RASTER_LISTS);
  const out = { hillshade: null, flood: null };
  if (!list || !caps.has(RASTER_TILE)) return out;
  const data = await getJSON(list).catch(() => null);
  const rasters = Array.isArray(data) ? data : data?.rasters || data?.items || [];
  out.hillshade = rasters.find((r) => r.kind === "dtm" || r.kind === "hillshade")?.name || null;
  out.flood = [...rasters].reverse().find((r) => r.kind === "flood_depth")?.name || null;
  return out;
}

/** Add a raster tile layer (hidden or visible) below the vector layers. */
export function addRasterLayer(map, id, name, style, visible, before) {
  const query = style ? `?style=${encodeURIComponent(style)}` : "";
  map.addSource(id, { type: "raster", tileSize: 256, tiles: [`${window.location.origin}/raster/${encodeURIComponent(name)}/{z}/{x}/{y}.png${query}`] });
  map.addLayer({ id, type: "raster", source: id, layout: { visibility: visible ? "visible" : "none" },
    paint: { "raster-opacity": id === "hillshade" ? 0.55 : 0.75 } }, before);
  return [id];
}
