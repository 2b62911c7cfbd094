// The web map application served at "/": map, layers with legends, login and role-based tools.
import "maplibre-gl/dist/maplibre-gl.css";
import "./styles.css";

import { Capabilities, getJSON, postJSON } from "./api.js";
import { ParcelCard } from "./card.js";
import { el } from "./dom.js";
import { DossierList } from "./dossiers.js";
import { FloodPanel } from "./flood.js";
import { lang, onLangChange, setLang, t, translate } from "./i18n.js";
import {
  LAYER_ORDER, addBuildingExtrusion, addRasterLayer, addStyledLayer, layerLabel, legendSwatch, loadWards, rampGradient,
  rasterLegend, rasterLegendBar, rasterProducts, readableLayers, wardLabelPoints,
} from "./layers.js";
import { HIDDEN_IN_3D, addOverlays, createMap, parcelTooltip, relabelControls, trackCursor } from "./mapview.js";
import { PermitTool } from "./permit.js";
import { ParcelSearch } from "./search.js";

class App {
  constructor() {
    this.user = { role: "anonymous", authenticated: false };
    this.readable = {};
    this.wards = {};
    this.rasters = {};
    this.caps = new Capabilities({});
    this.handlers = {};
    this.drawing = false;
  }

  on(event, fn) {
    (this.handlers[event] ||= []).push(fn);
  }

  emit(event, value) {
    for (const fn of this.handlers[event] || []) fn(value);
  }

  async start() {
    translate(document);
    document.getElementById("lang-switch").addEventListener("click", () => setLang(lang() === "vi" ? "en" : "vi"));
    onLangChange(() => this.relabel());
    this.setupTabs();
    this.setupLogin();
    [this.caps, this.user] = await Promise.all([Capabilities.load(), getJSON("/auth/me")]);
    this.showUser();

    this.map = createMap("map");
    trackCursor(this.map, document.getElementById("coord-city"), document.getElementById("coord-wgs"));
    this.card = new ParcelCard(this);
    await new Promise((resolve) => this.map.on("load", resolve));
    addOverlays(this.map);
    await this.loadLayers();
    this.search = new ParcelSearch(this);
    this.permit = new PermitTool(this);
    this.dossiers = new DossierList(this);
    this.flood = new FloodPanel(this);
    this.flood.refresh();
    parcelTooltip(this.map, document.getElementById("map-tooltip"),
      (p) => `${t("card.title", { parcel: p.parcel_no, sheet: p.sheet_no })} · ${this.wards[p.ward_code]?.name || p.ward_code}`);
    this.map.on("click", (e) => {
      if (!this.drawing) this.card.identifyAt(e.lngLat).catch((err) => this.flash(err.message));
    });
    document.body.dataset.ready = "true";
  }

  // --- layers -------------------------------------------------------------------------------

  /**
   * Show the layers the caller may read. Called again after a login or logout: layers that stay
   * readable are kept as they are (with their visibility), new ones are added in draw order and
   * the ones the caller may no longer read are removed with their sources.
   */
  async loadLayers() {
    const first = !this.loaded;
    this.loaded ||= {};
    try {
      this.readable = await readableLayers();
    } catch (err) {
      this.flash(`${t("app.error")}: ${err.message}`);
      this.readable = {};
    }
    try {
      this.wards = await loadWards(this.readable);
    } catch (err) {
      this.flash(`${t("app.error")}: ${err.message}`);
      this.wards = {};
    }
    this.emit("wards", this.wards);
    for (const name of Object.keys(this.loaded)) {
      if (this.readable[name] || this.loaded[name].raster) continue;
      for (const id of this.loaded[name].ids) this.map.removeLayer(id);
      if (name === "buildings" && this.map.getLayer("buildings-3d")) this.map.removeLayer("buildings-3d");
      for (const source of [name, `${name}-label-points`]) if (this.map.getSource(source)) this.map.removeSource(source);
      delete this.loaded[name];
    }
    const order = LAYER_ORDER.filter(([name]) => this.readable[name]);
    for (const [i, [name, visible]] of order.entries()) {
      if (this.loaded[name]) continue;
      const points = name === "wards" && Object.keys(this.wards).length ? wardLabelPoints(this.wards) : null;
      const { ids, labels, legend } = await addStyledLayer(this.map, name, visible, points);
      // before the next layer already on the map, else below the tools' overlays
      const next = order.slice(i + 1).map(([n]) => this.loaded[n]?.ids[0]).find(Boolean);
      const before = next || "selection-fill";
      for (const id of ids) this.map.moveLayer(id, before);
      this.loaded[name] = { ids, labels, legend, visible };
    }
    if (this.loaded.buildings && !this.map.getLayer("buildings-3d")) {
      addBuildingExtrusion(this.map);
      this.map.moveLayer("buildings-3d", "selection-fill");
    }
    // every label above every layer's geometry (in draw order), below the tools' overlays
    for (const [name] of LAYER_ORDER) {
      for (const id of this.loaded[name]?.labels || []) this.map.moveLayer(id, "selection-fill");
    }
    await this.loadRasters(first);
    this.renderLayerList();
    if (first) this.fitToData();
  }

  /**
   * Raster products the caller may read (DTM colour ramp, hillshade, DSM, nDSM ...), each a raster
   * tile layer below the vector layers with its legend; the flood depth item as before. Called
   * again after a login or logout: products no longer listed are removed, new ones added.
   */
  async loadRasters(first) {
    let rasters = { products: [], flood: null };
    try {
      rasters = await rasterProducts(this.caps);
    } catch (err) {
      this.flash(`${t("app.error")}: ${err.message}`);
    }
    this.rasters ||= {};
    const listed = new Set(rasters.products.map((p) => p.id));
    for (const id of Object.keys(this.rasters)) {
      if (listed.has(id)) continue;
      if (this.map.getLayer(id)) this.map.removeLayer(id);
      if (this.map.getSource(id)) this.map.removeSource(id);
      delete this.rasters[id];
    }
    const below = () => this.map.getStyle().layers.find((l) => l.type !== "background" && l.type !== "raster")?.id;
    for (const product of [...rasters.products].reverse()) { // the newest ends on top
      if (this.rasters[product.id]) continue;
      addRasterLayer(this.map, product.id, product.name, product.style, false, below(),
        { bounds: product.bounds, opacity: product.opacity });
      let legend = null;
      try {
        legend = await rasterLegend(this.caps, product);
      } catch (err) {
        this.flash(`${t("app.error")}: ${err.message}`);
      }
      this.rasters[product.id] = { product, legend };
    }
    if (first && rasters.flood) {
      const ids = addRasterLayer(this.map, "flood", rasters.flood, null, true, below());
      this.loaded.flood = { ids, legend: [], visible: true, raster: "swatch-raster flood" };
    }
  }

  renderLayerList() {
    const list = document.getElementById("layer-list");
    const visible = (ids) => ids.some((id) => this.map.getLayoutProperty(id, "visibility") !== "none");
    const items = [];
    for (const [name] of LAYER_ORDER) {
      const l = this.loaded[name];
      if (l) items.push(this.layerItem(name, l.ids, l.legend, visible(l.ids) || (name === "buildings" && document.body.classList.contains("view-3d"))));
    }
    items.push(el("li", { class: "layer-group", "data-i18n": "layers.rasters", text: t("layers.rasters") }));
    const products = Object.values(this.rasters).sort((a, b) => a.product.order - b.product.order);
    for (const { product, legend } of products) items.push(this.rasterItem(product, legend, visible([product.id])));
    if (!products.some(({ product }) => product.labelKey === "raster.hillshade")) items.push(this.pendingItem("hillshade"));
    const flood = this.loaded.flood;
    items.push(flood ? this.layerItem("flood", flood.ids, [], visible(flood.ids), flood.raster) : this.pendingItem("flood"));
    list.replaceChildren(...items);
  }

  /** One raster product: switch, colour ramp swatch, kind and raster name, legend with its range. */
  rasterItem(product, legend, visible) {
    const input = el("input", { type: "checkbox", id: `layer-${product.id}`, "data-raster": product.name, checked: visible });
    input.addEventListener("change", () => this.map.setLayoutProperty(product.id, "visibility", input.checked ? "visible" : "none"));
    return el("li", { class: "layer-item raster-item", "data-raster-kind": product.kind, "data-raster-style": product.style },
      el("label", { for: `layer-${product.id}` }, input,
        el("span", { class: `swatch-raster ${product.style === "hillshade" || product.kind === "hillshade" ? "hillshade" : ""}`,
          style: legend ? `background: ${rampGradient(legend)}` : null }),
        el("span", { class: "layer-name" },
          t(product.labelKey) === product.labelKey ? el("span", { text: product.kind })
            : el("span", { "data-i18n": product.labelKey, text: t(product.labelKey) }),
          el("small", { class: "raster-name", text: product.name }))),
      legend ? rasterLegendBar(legend) : null);
  }

  layerItem(name, ids, legend, visible, rasterSwatch = null) {
    const input = el("input", { type: "checkbox", id: `layer-${name}`, "data-layer": name, checked: visible });
    input.addEventListener("change", () => {
      for (const id of ids) {
        const in3d = document.body.classList.contains("view-3d");
        const show = input.checked && !(in3d && HIDDEN_IN_3D.has(id));
        this.map.setLayoutProperty(id, "visibility", show ? "visible" : "none");
      }
      if (name === "buildings" && this.map.getLayer("buildings-3d") && document.body.classList.contains("view-3d")) {
        this.map.setLayoutProperty("buildings-3d", "visibility", input.checked ? "visible" : "none");
      }
    });
    return el("li", { class: "layer-item" },
      el("label", { for: `layer-${name}` }, input, rasterSwatch ? el("span", { class: rasterSwatch }) : legendSwatch(legend),
        el("span", { class: "layer-name", "data-i18n": `layer.${name}`, text: layerLabel(name, this.readable[name]) })));
  }

  /** Raster products that appear when the server has them (DTM hillshade, flood results). */
  pendingItem(name) {
    return el("li", { class: "layer-item disabled", id: `layer-${name}-pending` },
      el("label", {}, el("input", { type: "checkbox", disabled: true }),
        el("span", { class: `swatch-raster ${name}` }),
        el("span", { class: "layer-name", "data-i18n": `layer.${name}`, text: t(`layer.${name}`) }),
        el("small", { class: "hint", "data-i18n": "layers.notAvailable", text: t("layers.notAvailable") })));
  }

  fitToData() {
    if (/[#&]map=/.test(window.location.hash)) return; // a view given in the URL wins
    const bbox = this.readable.parcels?.bbox;
    if (bbox && bbox.length === 4) this.map.fitBounds([[bbox[0], bbox[1]], [bbox[2], bbox[3]]], { padding: 30, duration: 0 });
  }

  // --- users and roles ------------------------------------------------------------------------

  setupLogin() {
    const dialog = document.getElementById("login-dialog");
    const error = document.getElementById("login-error");
    document.getElementById("login-open").addEventListener("click", () => {
      error.hidden = true;
      dialog.showModal();
    });
    document.getElementById("login-cancel").addEventListener("click", () => dialog.close());
    document.getElementById("login-form").addEventListener("submit", async (e) => {
      e.preventDefault();
      const form = new FormData(e.target);
      try {
        await postJSON("/auth/login", { username: form.get("username"), password: form.get("password") });
        dialog.close();
        e.target.reset();
        await this.reloadUser();
      } catch (err) {
        error.textContent = t("auth.failed", { message: err.message });
        error.hidden = false;
      }
    });
    document.getElementById("logout").addEventListener("click", async () => {
      await postJSON("/auth/logout", {});
      await this.reloadUser();
    });
  }

  async reloadUser() {
    document.body.dataset.ready = "false"; // until the layers of the new role are loaded
    this.user = await getJSON("/auth/me");
    this.showUser();
    this.card.close();
    this.permit?.clear();
    // what the caller may read (layers) and do (tools) depends on the role
    await this.loadLayers();
    this.flood.refresh();
    if (!document.querySelector(".tabs .active:not([hidden])")) this.openTab("layers");
    document.body.dataset.ready = "true";
  }

  showUser() {
    const u = this.user;
    const role = u.authenticated ? u.role : "anonymous";
    document.body.dataset.role = role;
    const name = document.getElementById("user-name");
    const badge = document.getElementById("user-role");
    if (u.authenticated) {
      name.removeAttribute("data-i18n");
      name.textContent = u.username;
      badge.dataset.i18n = `role.${u.role}`;
      badge.textContent = t(`role.${u.role}`);
      badge.hidden = false;
    } else {
      name.dataset.i18n = "auth.anonymous";
      name.textContent = t("auth.anonymous");
      badge.hidden = true;
    }
    document.getElementById("login-open").hidden = u.authenticated;
    document.getElementById("logout").hidden = !u.authenticated;
    for (const tab of document.querySelectorAll(".tabs [data-roles]")) {
      tab.hidden = !tab.dataset.roles.split(" ").includes(role);
      if (tab.hidden && tab.classList.contains("active")) this.openTab("layers");
    }
  }

  setupTabs() {
    for (const tab of document.querySelectorAll(".tabs [data-tab]")) {
      tab.addEventListener("click", () => this.openTab(tab.dataset.tab));
    }
  }

  openTab(name) {
    for (const tab of document.querySelectorAll(".tabs [data-tab]")) {
      tab.classList.toggle("active", tab.dataset.tab === name);
      tab.setAttribute("aria-selected", String(tab.dataset.tab === name));
    }
    for (const panel of document.querySelectorAll("[data-panel]")) panel.hidden = panel.dataset.panel !== name;
    if (name === "dossiers") this.dossiers?.load();
    if (name === "flood") this.flood?.refresh();
  }

  relabel() {
    if (this.map) relabelControls(this.map.getContainer());
    if (this.card?.current) this.card.show(this.card.current);
    this.flood?.refresh();
  }

  flash(text) {
    const box = document.getElementById("map-message");
    box.textContent = text;
    box.hidden = false;
    clearTimeout(this.flashTimer);
    this.flashTimer = setTimeout(() => (box.hidden = true), 5000);
  }
}

const app = new App();
window.gisApp = app; // handy in the browser console and for end-to-end tests
app.start().catch((err) => {
  const box = document.getElementById("map-message");
  box.textContent = `${t("app.error")}: ${err.message}`;
  box.hidden = false;
});
