// Permit check for officers: draw a proposed building footprint on the map (click to add
// vertices, double-click or "Done" to close), enter floors, height and floor elevation, and get
// the rule-by-rule compliance report of the licensing API with failing geometry highlighted.
import { ApiError, postJSON } from "./api.js";
import { el } from "./dom.js";
import { cityToLonLat, lonLatToCity } from "./coords.js";
import { fmt, t } from "./i18n.js";
import { setOverlay } from "./mapview.js";

/** Candidate paths of the compliance-check endpoint (the first one the server has is used). */
const CHECK_PATHS = ["/api/checks", "/api/licensing/checks", "/api/licensing/check"];

/** Planar area (m²) of a lon/lat ring, computed in VN-2000 / TM-3 metres. */
export function ringArea(ring) {
  const xy = ring.map(([lon, lat]) => lonLatToCity(lon, lat));
  let s = 0;
  for (let i = 0; i < xy.length; i++) {
    const [x1, y1] = xy[i];
    const [x2, y2] = xy[(i + 1) % xy.length];
    s += x1 * y2 - x2 * y1;
  }
  return Math.abs(s) / 2;
}

export class PermitTool {
  constructor(app) {
    this.app = app;
    this.vertices = [];
    this.drawing = false;
    this.parcel = null;
    this.status = document.getElementById("draw-status");
    this.result = document.getElementById("permit-result");
    this.finishBtn = document.getElementById("draw-finish");
    document.getElementById("draw-start").addEventListener("click", () => this.start());
    this.finishBtn.addEventListener("click", () => this.finish());
    document.getElementById("draw-clear").addEventListener("click", () => this.clear());
    document.getElementById("permit-form").addEventListener("submit", (e) => {
      e.preventDefault();
      this.check(new FormData(e.target));
    });
    app.on("parcel", (p) => this.setParcel(p));
    app.map.on("click", (e) => {
      if (!this.drawing) return;
      this.vertices.push([e.lngLat.lng, e.lngLat.lat]);
      this.redraw();
    });
    app.map.on("dblclick", (e) => {
      if (!this.drawing) return;
      e.preventDefault();
      this.finish();
    });
  }

  setParcel(parcel) {
    if (!parcel && this.drawing) return; // the card closes when drawing starts; keep the parcel
    this.parcel = parcel;
    const p = parcel?.properties;
    const text = document.getElementById("permit-parcel");
    if (p) {
      text.removeAttribute("data-i18n");
      text.textContent = `${t("permit.parcel")}: ${t("card.title", { parcel: p.parcel_no, sheet: p.sheet_no })} · ${p.ward_code}`;
    } else {
      text.setAttribute("data-i18n", "permit.noParcel");
      text.textContent = t("permit.noParcel");
    }
  }

  start() {
    this.clear();
    this.drawing = true;
    this.app.drawing = true;
    this.app.map.doubleClickZoom.disable();
    this.app.map.getCanvas().style.cursor = "crosshair";
    this.finishBtn.hidden = false;
    this.status.textContent = t("permit.drawing");
  }

  finish() {
    this.drawing = false;
    this.app.drawing = false;
    this.finishBtn.hidden = true;
    this.app.map.getCanvas().style.cursor = "";
    setTimeout(() => this.app.map.doubleClickZoom.enable(), 300);
    this.redraw();
  }

  clear() {
    this.vertices = [];
    this.drawing = false;
    this.app.drawing = false;
    this.finishBtn.hidden = true;
    this.status.textContent = "";
    this.result.replaceChildren();
    setOverlay(this.app.map, "draw", []);
    setOverlay(this.app.map, "violations", []);
  }

  footprint() {
    if (this.vertices.length < 3) return null;
    return { type: "Polygon", coordinates: [[...this.vertices, this.vertices[0]]] };
  }

  redraw() {
    const features = this.vertices.map((c) => ({ type: "Feature", geometry: { type: "Point", coordinates: c }, properties: {} }));
    const poly = this.footprint();
    if (poly) features.unshift({ type: "Feature", geometry: poly, properties: {} });
    else if (this.vertices.length === 2) {
      features.unshift({ type: "Feature", geometry: { type: "LineString", coordinates: this.vertices }, properties: {} });
    }
    setOverlay(this.app.map, "draw", features);
    if (this.vertices.length) {
      this.status.textContent = t("permit.vertices", { count: this.vertices.length,
        area: poly ? fmt(ringArea(this.vertices), 1) : "0" }) + (this.drawing ? ` — ${t("permit.drawing")}` : "");
    }
  }

  async check(form) {
    this.result.replaceChildren();
    const say = (text, cls = "message") => this.result.replaceChildren(el("p", { class: cls, text }));
    if (!this.parcel) return say(t("permit.noParcel"));
    const footprint = this.footprint();
    if (!footprint) return say(t("permit.needFootprint"));
    const path = this.app.caps.first(CHECK_PATHS, "post");
    if (!path) return say(`${t("app.unavailable")} (POST ${CHECK_PATHS[0]})`, "message unavailable");
    const body = {
      parcel_id: this.parcel.id,
      footprint, crs: "http://www.opengis.net/def/crs/OGC/1.3/CRS84",
      floors: Number(form.get("floors")), height: Number(form.get("height")),
      floor_elevation: Number(form.get("floor_elevation")), use: form.get("use"),
    };
    try {
      this.lastRequest = { path, body };
      this.render(await postJSON(path, body));
    } catch (err) {
      say(`${t("app.error")}: ${err instanceof ApiError ? err.message : String(err)}`, "error");
    }
  }

  /** The same check as a printable PDF report (with a map extract), opened in a new tab. */
  async printable() {
    const { path, body } = this.lastRequest;
    const resp = await fetch(`${path}?format=pdf`, {
      method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    if (resp.ok) window.open(URL.createObjectURL(await resp.blob()), "_blank", "noopener");
  }

  render(report) {
    const results = report.results || [];
    const failed = results.filter((r) => r.status === "fail");
    const summary = failed.length
      ? t("permit.result.summaryFail", { failed: failed.length, count: results.length })
      : t("permit.result.summaryPass", { count: results.length });
    const value = (v, unit) => (v === null || v === undefined ? "—" : `${fmt(v, 2)}${unit ? ` ${unit}` : ""}`);
    this.result.replaceChildren(
      el("p", { class: `summary ${failed.length ? "fail" : "pass"}`, id: "permit-summary", text: summary }),
      el("table", { class: "table rules", id: "permit-rules" },
        el("thead", {}, el("tr", {}, ...["permit.rule", "permit.measured", "permit.limit"].map((k) => el("th", { text: t(k) })), el("th"))),
        el("tbody", {}, ...results.map((r) => el("tr", { class: r.status, "data-rule": r.rule, title: r.message || "" },
          el("td", {}, el("span", { text: ruleTitle(r) }), el("br"), el("small", { class: "basis", text: r.legal_basis || "" })),
          el("td", { text: value(r.measured, r.unit) }),
          el("td", { text: value(r.limit, r.unit) }),
          el("td", {}, el("span", { class: `badge ${r.status}`, text: t(`permit.result.${r.status}`) })))))),
      el("button", { type: "button", class: "btn", id: "permit-pdf", text: t("permit.pdf"), onclick: () => this.printable() }),
    );
    // failing geometry comes in the report's CRS (the city CRS, EPSG:9210)
    const inCity = String(report.crs || "").endsWith("9210");
    const geoms = failed.map((r) => r.geometry).filter(Boolean).map((g) => (inCity ? toLonLat(g) : g));
    setOverlay(this.app.map, "violations", geoms.map((g) => ({ type: "Feature", geometry: g, properties: {} })));
  }
}

function ruleTitle(r) {
  const key = `check.${r.rule}`;
  const title = t(key);
  return title === key ? r.title || r.rule : title;
}

/** A GeoJSON geometry in VN-2000 / TM-3 metres converted to lon/lat. */
export function toLonLat(geometry) {
  const convert = (c) => (typeof c[0] === "number" ? cityToLonLat(c[0], c[1]) : c.map(convert));
  if (geometry.type === "GeometryCollection") return { ...geometry, geometries: geometry.geometries.map(toLonLat) };
  return { ...geometry, coordinates: convert(geometry.coordinates) };
}
