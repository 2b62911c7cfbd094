// The map: MapLibre GL JS with the project's own layers only (no remote basemap; label glyphs from
// our server), a scale bar, cursor coordinates in VN-2000 and WGS84, and the 2D/3D switch.
import maplibregl from "maplibre-gl";
import { formatCity, formatWgs84, lonLatToCity } from "./coords.js";
import { t } from "./i18n.js";
import { EXTRUSION_ID, GLYPHS_URL } from "./layers.js";

/** Centre of the demo neighbourhood (Quận 8), used until the parcels' extent is known. */
export const DEFAULT_CENTER = [106.6337, 10.7256];

export function createMap(container) {
  const map = new maplibregl.Map({
    container,
    style: {
      version: 8,
      glyphs: GLYPHS_URL,
      sources: {},
      layers: [{ id: "background", type: "background", paint: { "background-color": "#eef1ec" } }],
    },
    center: DEFAULT_CENTER,
    zoom: 15.5,
    maxPitch: 70,
    hash: "map", // the view is in the URL (#map=zoom/lat/lon/bearing/pitch): links and reloads keep it
    attributionControl: { compact: true }, // attributions come from the layers' TileJSON
    locale: controlLocale(),
  });
  map.addControl(new maplibregl.NavigationControl({ visualizePitch: true }), "top-right");
  map.addControl(new maplibregl.ScaleControl({ maxWidth: 140, unit: "metric" }), "bottom-right");
  map.addControl(new ViewModeControl(), "top-right");
  return map;
}

/** MapLibre's own control labels, from the i18n catalogue. */
const CONTROL_KEYS = {
  "NavigationControl.ZoomIn": ["maplibre.zoomIn", ".maplibregl-ctrl-zoom-in"],
  "NavigationControl.ZoomOut": ["maplibre.zoomOut", ".maplibregl-ctrl-zoom-out"],
  "NavigationControl.ResetBearing": ["maplibre.resetBearing", ".maplibregl-ctrl-compass"],
  "AttributionControl.ToggleAttribution": ["maplibre.attribution", ".maplibregl-ctrl-attrib-button"],
};

function controlLocale() {
  return Object.fromEntries(Object.entries(CONTROL_KEYS).map(([k, [key]]) => [k, t(key)]));
}

/** Re-label the map controls after a language change. */
export function relabelControls(container) {
  for (const [key, selector] of Object.values(CONTROL_KEYS)) {
    for (const node of container.querySelectorAll(selector)) {
      node.title = t(key);
      node.setAttribute("aria-label", t(key));
    }
  }
}

export function trackCursor(map, cityEl, wgsEl) {
  const show = (lngLat) => {
    cityEl.textContent = formatCity(lonLatToCity(lngLat.lng, lngLat.lat));
    wgsEl.textContent = formatWgs84(lngLat.lng, lngLat.lat);
  };
  map.on("mousemove", (e) => show(e.lngLat));
  cityEl.title = t("coords.hint");
  show(map.getCenter());
}

/** Layers the 3D view hides while their layer is switched on (flat fills, ground labels). */
export const HIDDEN_IN_3D = new Set(["buildings-fill", "parcels-label"]);

/** 2D <-> 3D: pitch the camera and show the building blocks extruded by height (LoD1). */
class ViewModeControl {
  onAdd(map) {
    this.map = map;
    this.el = document.createElement("div");
    this.el.className = "maplibregl-ctrl maplibregl-ctrl-group";
    this.button = document.createElement("button");
    this.button.type = "button";
    this.button.id = "view-3d";
    this.button.className = "view-mode";
    this.button.textContent = "3D";
    this.button.setAttribute("data-i18n-title", "layers.3d");
    this.button.title = t("layers.3d");
    this.button.addEventListener("click", () => this.toggle());
    this.el.append(this.button);
    return this.el;
  }

  toggle() {
    const map = this.map;
    const on = !map.getLayer(EXTRUSION_ID) ? false : map.getLayoutProperty(EXTRUSION_ID, "visibility") !== "visible";
    if (map.getLayer(EXTRUSION_ID)) map.setLayoutProperty(EXTRUSION_ID, "visibility", on ? "visible" : "none");
    if (map.getLayer("buildings-fill")) map.setLayoutProperty("buildings-fill", "visibility", on ? "none" : "visible");
    // parcel numbers lie on the ground: in 3D they would float over the roofs
    if (map.getLayer("parcels-label")) {
      const parcelsShown = map.getLayoutProperty("parcels-fill", "visibility") !== "none";
      map.setLayoutProperty("parcels-label", "visibility", on || !parcelsShown ? "none" : "visible");
    }
    map.easeTo({ pitch: on ? 60 : 0, bearing: on ? -20 : 0, duration: 800 });
    this.button.textContent = on ? "2D" : "3D";
    this.button.setAttribute("data-i18n-title", on ? "layers.2d" : "layers.3d");
    this.button.title = t(on ? "layers.2d" : "layers.3d");
    document.body.classList.toggle("view-3d", on);
  }

  onRemove() {
    this.el.remove();
  }
}

/** GeoJSON overlay sources used by the tools: selection, drawing, failing geometry, flood. */
export function addOverlays(map) {
  const empty = { type: "FeatureCollection", features: [] };
  for (const id of ["selection", "draw", "violations"]) map.addSource(id, { type: "geojson", data: empty });
  map.addLayer({ id: "selection-fill", type: "fill", source: "selection",
    paint: { "fill-color": "#1f6feb", "fill-opacity": 0.18 } });
  map.addLayer({ id: "selection-line", type: "line", source: "selection",
    paint: { "line-color": "#1f6feb", "line-width": 3 } });
  map.addLayer({ id: "draw-fill", type: "fill", source: "draw", filter: ["==", ["geometry-type"], "Polygon"],
    paint: { "fill-color": "#f4a261", "fill-opacity": 0.45 } });
  map.addLayer({ id: "draw-line", type: "line", source: "draw", filter: ["!=", ["geometry-type"], "Point"],
    paint: { "line-color": "#e76f51", "line-width": 2.5, "line-dasharray": [2, 1] } });
  map.addLayer({ id: "draw-vertex", type: "circle", source: "draw", filter: ["==", ["geometry-type"], "Point"],
    paint: { "circle-radius": 5, "circle-color": "#ffffff", "circle-stroke-color": "#e76f51", "circle-stroke-width": 2 } });
  map.addLayer({ id: "violations-fill", type: "fill", source: "violations",
    filter: ["==", ["geometry-type"], "Polygon"], paint: { "fill-color": "#d62828", "fill-opacity": 0.45 } });
  map.addLayer({ id: "violations-line", type: "line", source: "violations",
    paint: { "line-color": "#d62828", "line-width": 3 } });
}

export function setOverlay(map, id, features) {
  const src = map.getSource(id);
  if (src) src.setData({ type: "FeatureCollection", features });
}

/** Fit the map to a GeoJSON geometry (any type). */
export function fitGeometry(map, geometry, maxZoom = 19) {
  const bounds = new maplibregl.LngLatBounds();
  const walk = (c) => (typeof c[0] === "number" ? bounds.extend(c) : c.forEach(walk));
  walk(geometry.coordinates);
  if (!bounds.isEmpty()) map.fitBounds(bounds, { padding: 80, maxZoom, duration: 600 });
}

/** Parcel number, sheet and ward under the cursor at large scales (the map labels show the number only). */
export function parcelTooltip(map, node, label) {
  map.on("mousemove", (e) => {
    const hit = map.getZoom() >= 16.5 && map.getLayer("parcels-fill")
      ? map.queryRenderedFeatures(e.point, { layers: ["parcels-fill"] })[0] : null;
    if (!hit) {
      node.hidden = true;
      return;
    }
    node.textContent = label(hit.properties);
    node.style.transform = `translate(${e.point.x + 14}px, ${e.point.y + 14}px)`;
    node.hidden = false;
  });
  map.getCanvas().addEventListener("mouseleave", () => (node.hidden = true));
}
