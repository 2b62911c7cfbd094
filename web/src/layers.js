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
export async function addStyledLayer(map, name, visible, labelPoints = null) {
  const style = await getJSON(`/styles/${encodeURIComponent(name)}.json?glyphs=${encodeURIComponent(GLYPHS_URL)}`);
  for (const [id, source] of Object.entries(style.sources || {})) {
    if (!map.getSource(id)) map.addSource(id, source);
  }
  // one label per feature at a given point instead of one per tile the polygon touches
  const pointSource = `${name}-label-points`;
  if (labelPoints && !map.getSource(pointSource)) map.addSource(pointSource, { type: "geojson", data: labelPoints });
  const ids = [];
  const labels = [];
  const legend = [];
  for (const raw of style.layers || []) {
    if (raw.type === "background") continue;
    const layer = raw.type === "symbol" && labelPoints ? { ...raw, source: pointSource, "source-layer": undefined } : raw;
    if (layer["source-layer"] === undefined) delete layer["source-layer"];
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

/**
 * Wards from the public "wards" layer, when the caller may read it: {code: {name, district}}.
 * The search, the card and the tooltip show ward names with it; without it they show codes.
 */
export async function loadWards(readable) {
  if (!readable.wards) return {};
  const fc = await getJSON("/ogc/collections/wards/items?f=json&limit=1000");
  const wards = {};
  for (const f of fc.features || []) {
    const p = f.properties || {};
    if (p.code) {
      wards[String(p.code)] = { name: p.name || String(p.code), district: p.district || "", point: labelPoint(f.geometry) };
    }
  }
  return wards;
}

/** The wards' label points as GeoJSON (properties as in the layer's tiles: code, name). */
export function wardLabelPoints(wards) {
  return {
    type: "FeatureCollection",
    features: Object.entries(wards).filter(([, w]) => w.point).map(([code, w]) => ({
      type: "Feature", properties: { code, name: w.name }, geometry: { type: "Point", coordinates: w.point },
    })),
  };
}

/**
 * A point inside a (multi)polygon for its label: on the horizontal line through the middle of the
 * largest part, the middle of the widest stretch inside it (a centroid may fall outside).
 */
export function labelPoint(geometry) {
  if (!geometry) return null;
  const polygons = geometry.type === "Polygon" ? [geometry.coordinates]
    : geometry.type === "MultiPolygon" ? geometry.coordinates : [];
  const extent = (ring) => ring.reduce(([a, b, c, d], [x, y]) => [Math.min(a, x), Math.min(b, y), Math.max(c, x), Math.max(d, y)],
    [Infinity, Infinity, -Infinity, -Infinity]);
  const size = (rings) => { const [a, b, c, d] = extent(rings[0]); return (c - a) * (d - b); };
  const largest = polygons.reduce((best, p) => (!best || size(p) > size(best) ? p : best), null);
  if (!largest) return null;
  const [, south, , north] = extent(largest[0]);
  const y = (south + north) / 2;
  const xs = [];
  for (const ring of largest) {
    for (let i = 0; i < ring.length - 1; i++) {
      const [x1, y1] = ring[i];
      const [x2, y2] = ring[i + 1];
      if ((y1 <= y) !== (y2 <= y)) xs.push(x1 + ((y - y1) / (y2 - y1)) * (x2 - x1));
    }
  }
  xs.sort((a, b) => a - b);
  let best = null;
  for (let i = 0; i + 1 < xs.length; i += 2) if (!best || xs[i + 1] - xs[i] > best[1] - best[0]) best = [xs[i], xs[i + 1]];
  return best ? [(best[0] + best[1]) / 2, y] : null;
}

/** "Phường 4 (27430)" when the ward's name is known, else the code. */
export function wardLabel(wards, code) {
  const w = wards?.[code];
  return w ? `${w.name} (${code})` : String(code ?? "—");
}

export function layerLabel(name, info) {
  const key = `layer.${name}`;
  const label = t(key);
  return label === key ? info?.title || name : label;
}

/** Raster catalogue endpoints the server may offer (the first one it has is used). */
const RASTER_LISTS = ["/api/rasters", "/rasters", "/raster"];
const RASTER_TILE = "/raster/{name}/{z}/{x}/{y}.{ext}";
const RASTER_LEGEND = "/legend/raster/{name}.json";
/** Kinds shown in the panel's raster section (flood results have their own item and panel). */
const FLOOD_KINDS = new Set(["flood_depth", "flood_level"]);

/**
 * Raster products the caller may read (GET /api/rasters lists only those), when the server lists
 * its rasters and serves raster tiles: `products` is one entry per map layer (the DTM also as a
 * hillshade when no hillshade raster is listed), newest first; `flood` the newest flood depth.
 */
export async function rasterProducts(caps) {
  const list = caps.first(RASTER_LISTS);
  const out = { products: [], flood: null, available: false };
  if (!list || !caps.has(RASTER_TILE)) return out;
  out.available = true;
  const data = await getJSON(list);
  const rasters = Array.isArray(data) ? data : data?.rasters || data?.items || [];
  out.flood = rasters.find((r) => r.kind === "flood_depth")?.name || null;
  const hasHillshade = rasters.some((r) => r.kind === "hillshade");
  for (const r of rasters) {
    if (FLOOD_KINDS.has(r.kind)) continue;
    out.products.push(rasterProduct(r, "default"));
    if (r.kind === "dtm" && !hasHillshade) out.products.push(rasterProduct(r, "hillshade"));
  }
  out.products.forEach((p, i) => (p.order = i));
  return out;
}

function rasterProduct(r, style) {
  const shade = style === "hillshade" || r.kind === "hillshade";
  return {
    id: `raster-${r.name}${style === "default" ? "" : `-${style}`}`,
    name: r.name, kind: r.kind, style, bounds: r.bounds, resolution: r.resolution,
    labelKey: shade ? "raster.hillshade" : `raster.kind.${r.kind}`,
    opacity: shade ? 0.55 : 0.75,
  };
}

/** The colour ramp of a raster product (GET /legend/raster/{name}.json): {min, max, unit, stops}. */
export async function rasterLegend(caps, product) {
  if (!caps.has(RASTER_LEGEND)) return null;
  return getJSON(`/legend/raster/${encodeURIComponent(product.name)}.json?style=${encodeURIComponent(product.style)}`);
}

/** Add a raster tile layer (hidden or visible) below `before`; returns its MapLibre layer ids. */
export function addRasterLayer(map, id, name, style, visible, before, { bounds = null, opacity = null } = {}) {
  const query = style && style !== "default" ? `?style=${encodeURIComponent(style)}` : "";
  const source = { type: "raster", tileSize: 256, maxzoom: 20,
    tiles: [`${window.location.origin}/raster/${encodeURIComponent(name)}/{z}/{x}/{y}.png${query}`] };
  if (bounds && bounds.length === 4 && bounds.every(Number.isFinite)) source.bounds = bounds;
  map.addSource(id, source);
  map.addLayer({ id, type: "raster", source: id, layout: { visibility: visible ? "visible" : "none" },
    paint: { "raster-opacity": opacity ?? (id === "hillshade" ? 0.55 : 0.75) } }, before);
  return [id];
}

/** A CSS gradient of a raster legend's colour stops (min on the left). */
export function rampGradient(legend) {
  const stops = legend.stops || [];
  const at = (i) => Math.round((i / Math.max(1, stops.length - 1)) * 100);
  return `linear-gradient(90deg, ${stops.map((s, i) => `${s.color} ${at(i)}%`).join(", ")})`;
}

/** A horizontal colour bar with its range, from a raster legend's stops. */
export function rasterLegendBar(legend) {
  const bar = document.createElement("div");
  bar.className = "raster-legend";
  const ramp = document.createElement("span");
  ramp.className = "ramp";
  ramp.style.background = rampGradient(legend);
  bar.append(ramp);
  if (legend.unit) { // a shade has no unit: its grey ramp has no range worth reading
    const range = document.createElement("small");
    range.className = "range";
    range.textContent = `${fmtNumber(legend.min)} … ${fmtNumber(legend.max)} ${legend.unit}`;
    bar.append(range);
  }
  return bar;
}

function fmtNumber(v) {
  return Number.isFinite(v) ? String(Math.round(v * 100) / 100).replace("-", "−") : "—";
}
