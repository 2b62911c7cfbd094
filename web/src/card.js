// Click to identify (/api/identify) and the parcel card: area, land use with its Vietnamese
// name, zoning rules, buildings on the parcel, and history/lineage and rights (RRR) from the
// land-register API when the server has it and the role allows.
import { getJSON, query } from "./api.js";
import { fmt, fmtDate, t } from "./i18n.js";
import { el } from "./dom.js";
import { wardLabel } from "./layers.js";
import { setOverlay } from "./mapview.js";

const IDENTIFY_LAYERS = ["parcels", "buildings", "zoning"];
const STAFF = new Set(["officer", "planner", "admin"]);
const RIGHTS_ROLES = new Set(["officer", "admin"]);
/** Land-register endpoints of the licensing API. */
const REGISTER = {
  parcel: "/api/register/parcels/{parcel_id}",
  history: "/api/register/parcels/{parcel_id}/history",
  lineage: "/api/register/parcels/{parcel_id}/lineage",
};

export function landUseName(code) {
  if (!code) return "—";
  const key = `landuse.${code}`;
  const name = t(key);
  return name === key ? code : `${name} (${code})`;
}

export class ParcelCard {
  constructor(app) {
    this.app = app;
    this.node = document.getElementById("parcel-card");
    this.current = null;
  }

  /** Identify what is at a clicked point and show the parcel there. */
  async identifyAt(lngLat) {
    const readable = IDENTIFY_LAYERS.filter((n) => this.app.readable[n]);
    if (!readable.includes("parcels")) return;
    const found = await getJSON(`/api/identify?${query({ lon: lngLat.lng.toFixed(7), lat: lngLat.lat.toFixed(7),
      layers: readable.join(","), limit: 5 })}`);
    const parcel = found.features.find((f) => f.layer === "parcels");
    if (!parcel) {
      this.close();
      return;
    }
    const zoning = found.features.filter((f) => f.layer === "zoning");
    await this.show(parcel, zoning);
  }

  /** Show a parcel feature (GeoJSON in CRS84); zoning zones are looked up when not given. */
  async show(parcel, zoning = null) {
    this.current = parcel;
    setOverlay(this.app.map, "selection", [{ type: "Feature", geometry: parcel.geometry, properties: {} }]);
    if (zoning === null) zoning = await this.zonesOf(parcel);
    const buildings = await this.buildingsOf(parcel);
    this.render(parcel, zoning, buildings);
    this.app.emit("parcel", parcel);
    this.loadRegister(parcel);
  }

  async zonesOf(parcel) {
    return this.app.readable.zoning ? intersecting(this.app, "zoning", parcel.geometry, 5) : [];
  }

  async buildingsOf(parcel) {
    if (!this.app.readable.buildings) return [];
    const found = await intersecting(this.app, "buildings", parcel.geometry, 30);
    // neighbours' buildings touching the boundary intersect too; keep the parcel's own
    const own = found.filter((b) => b.properties.parcel_id === parcel.id);
    return own.length ? own : found.filter((b) => b.properties.parcel_id === undefined);
  }

  render(parcel, zoning, buildings) {
    const p = parcel.properties;
    const rows = [
      [t("card.ward"), wardLabel(this.app.wards, p.ward_code)],
      [t("card.address"), p.address || "—"],
      [t("card.area"), `${fmt(p.area, 1)} m²`],
      [t("card.legalArea"), p.legal_area ? `${fmt(p.legal_area, 1)} m²` : "—"],
      [t("card.landUse"), landUseName(p.land_use)],
    ];
    if (p.status) rows.push([t("card.status"), t(`parcelStatus.${p.status}`)]);
    const role = this.app.user.role;
    const parts = [
      el("header", { class: "card-head" },
        el("h2", { id: "card-title", text: t("card.title", { parcel: p.parcel_no, sheet: p.sheet_no }) }),
        el("button", { type: "button", class: "icon", "aria-label": t("app.close"), title: t("app.close"),
          text: "×", onclick: () => this.close() })),
      definitionList(rows, "card-facts"),
      zoning.length ? el("section", {}, el("h3", { text: t("card.zoning") }), ...zoning.map(zoneBlock)) : null,
      buildings.length ? el("section", {}, el("h3", { text: t("card.buildings") }),
        el("ul", { class: "plain" }, ...buildings.slice(0, 6).map((b) => el("li", {
          text: t("card.building", { floors: b.properties.floors ?? "?", height: fmt(b.properties.height, 1) }) })))) : null,
      el("section", { id: "card-register" }),
      STAFF.has(role) && this.app.readable.parcels
        ? el("button", { type: "button", class: "btn primary", id: "card-permit", text: t("card.checkPermit"),
          onclick: () => this.app.openTab("permit") })
        : null,
    ];
    this.node.replaceChildren(...parts.filter(Boolean));
    if (!RIGHTS_ROLES.has(role)) {
      document.getElementById("card-register").append(el("p", { class: "hint", text: t("card.restricted") }));
    }
    this.node.hidden = false;
  }

  /** History, lineage and rights from the land-register API (staff; rights for officers). */
  async loadRegister(parcel) {
    const box = document.getElementById("card-register");
    const role = this.app.user.role;
    if (!box || !STAFF.has(role)) return;
    const caps = this.app.caps;
    const fill = (path) => path.replace(/\{[^}]+\}/, encodeURIComponent(parcel.id));
    if (!caps.has(REGISTER.history) && !caps.has(REGISTER.parcel)) {
      box.append(el("p", { class: "hint", id: "card-register-unavailable", text: t("card.historyUnavailable") }));
      return;
    }
    const [history, lineage, full] = await Promise.all([
      caps.has(REGISTER.history) ? getJSON(fill(REGISTER.history)).catch(() => null) : null,
      caps.has(REGISTER.lineage) ? getJSON(fill(REGISTER.lineage)).catch(() => null) : null,
      RIGHTS_ROLES.has(role) && caps.has(REGISTER.parcel) ? getJSON(fill(REGISTER.parcel)).catch(() => null) : null,
    ]);
    if (this.current !== parcel) return; // another parcel was opened meanwhile
    if (history) box.append(el("h3", { text: t("card.history") }), historyList(history));
    if (lineage) box.append(el("h3", { text: t("card.lineage") }), lineageList(lineage));
    if (full) {
      box.append(el("h3", { text: t("card.rights") }), rightsList(full.properties?.rrr || []));
      if (full.properties?.owner_name) {
        box.append(definitionList([[t("card.owner"), full.properties.owner_name]], "card-facts"));
      }
    }
  }

  close() {
    this.node.hidden = true;
    this.current = null;
    setOverlay(this.app.map, "selection", []);
    this.app.emit("parcel", null);
  }
}

/** Features of a layer intersecting a GeoJSON geometry (CRS84), [] when the query is not served. */
async function intersecting(app, layer, geometry, limit) {
  if (!app.caps.has("/api/layers/{name}/intersects", "post")) return [];
  const resp = await fetch(`/api/layers/${layer}/intersects?limit=${limit}`, {
    method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/geo+json", Accept: "application/geo+json" },
    body: JSON.stringify(geometry),
  });
  return resp.ok ? (await resp.json()).features : [];
}

function definitionList(rows, cls) {
  return el("dl", { class: cls }, ...rows.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: String(v ?? "—") })]));
}

function zoneBlock(zone) {
  const z = zone.properties;
  const pct = (v) => (v === null || v === undefined ? "—" : `${fmt(v * 100, 0)} %`);
  return el("div", { class: "zone" },
    el("p", { class: "zone-name" }, el("b", { text: `${t("card.zone")} ${z.zone_code}` }), ` — ${z.name || ""}`),
    definitionList([
      [t("card.landUse"), landUseName(z.land_use)],
      [t("card.maxDensity"), pct(z.max_density)],
      [t("card.maxFar"), fmt(z.max_far, 1)],
      [t("card.maxFloors"), z.max_floors ?? "—"],
      [t("card.maxHeight"), z.max_height !== null && z.max_height !== undefined ? `${fmt(z.max_height, 1)} m` : "—"],
      [t("card.minSetback"), z.min_setback !== null && z.min_setback !== undefined ? `${fmt(z.min_setback, 1)} m` : "—"],
      [t("card.minGround"), z.min_ground_elevation !== null && z.min_ground_elevation !== undefined
        ? `${fmt(z.min_ground_elevation, 2)} m` : "—"],
      [t("card.planDecision"), z.plan_decision || "—"],
    ], "zone-rules"));
}

function asList(data) {
  if (Array.isArray(data)) return data;
  if (data && typeof data === "object") {
    for (const key of ["versions", "history", "items", "events", "rrr", "rights", "ancestors"]) {
      if (Array.isArray(data[key])) return data[key];
    }
  }
  return [];
}

function historyList(data) {
  const items = asList(data);
  if (!items.length) return el("p", { class: "hint", text: t("card.noHistory") });
  return el("ol", { class: "timeline" }, ...items.slice(0, 20).map((h) => el("li", {},
    el("time", { text: fmtDate(h.at || h.begin_lifespan) }), " ",
    el("span", { text: [h.action || h.operation || "", h.actor ? `(${h.actor})` : "", h.detail?.note || ""]
      .filter(Boolean).join(" ") }))));
}

function lineageList(data) {
  const edges = data?.edges || [];
  if (!edges.length) return el("p", { class: "hint", text: t("card.noLineage") });
  const label = (id) => {
    const p = data.parcels?.[id];
    return p ? `#${p.parcel_no} (${p.ward_code}/${p.sheet_no})` : `id ${id}`;
  };
  return el("ul", { class: "plain" }, ...edges.map((e) => el("li", {
    text: `${label(e.parent_id)} → ${label(e.child_id)} · ${e.operation || ""} · ${fmtDate(e.at)}` })));
}

function rightsList(data) {
  const items = asList(data);
  if (!items.length) return el("p", { class: "hint", text: "—" });
  return el("ul", { class: "plain" }, ...items.map((r) => el("li", {
    text: [r.kind, r.type, r.party_name || r.party?.name, r.share ? `${fmt(r.share * 100, 0)} %` : ""]
      .filter(Boolean).join(" · ") })));
}
