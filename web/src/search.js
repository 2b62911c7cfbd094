// Parcel search for officers: by ward (name or code, suggested from the wards layer) + map sheet +
// parcel number (/api/parcels/lookup) or by address (OGC API Features items with a CQL2 filter).
import { ApiError, getJSON, query } from "./api.js";
import { landUseName } from "./card.js";
import { el } from "./dom.js";
import { t } from "./i18n.js";
import { wardLabel } from "./layers.js";
import { fitGeometry } from "./mapview.js";

export class ParcelSearch {
  constructor(app) {
    this.app = app;
    this.message = document.getElementById("search-message");
    this.results = document.getElementById("search-results");
    document.getElementById("search-number").addEventListener("submit", (e) => {
      e.preventDefault();
      this.byNumber(new FormData(e.target));
    });
    document.getElementById("search-address").addEventListener("submit", (e) => {
      e.preventDefault();
      this.byAddress(new FormData(e.target).get("address"));
    });
    app.map.on("idle", () => this.refreshWards());
    app.on("wards", () => this.refreshWards());
    this.refreshWards();
  }

  /**
   * The ward field's suggestions: ward names (Vietnamese) with their codes from the wards layer,
   * and the codes of any other wards seen in the loaded parcel tiles.
   */
  refreshWards() {
    const known = this.app.wards || {};
    const seen = this.app.map.getSource("parcels")
      ? this.app.map.querySourceFeatures("parcels", { sourceLayer: "parcels" }).map((f) => f.properties.ward_code)
      : [];
    const options = Object.entries(known)
      .sort(([, a], [, b]) => a.name.localeCompare(b.name, "vi", { numeric: true }))
      .map(([code, w]) => [w.name, [code, w.district].filter(Boolean).join(" · ")]);
    for (const code of [...new Set(seen.filter(Boolean))].sort()) if (!known[code]) options.push([code, ""]);
    const list = document.getElementById("ward-list");
    if (list.options.length === options.length && [...list.options].every((o, i) => o.value === options[i][0])) return;
    list.replaceChildren(...options.map(([value, label]) => el("option", { value, label: label || undefined })));
  }

  /** The ward code of what was typed: a code, or a ward name ("Phường 4", "phường 4"). */
  wardCode(text) {
    const typed = text.trim().normalize("NFC").toLocaleLowerCase("vi");
    const byName = Object.entries(this.app.wards || {})
      .find(([code, w]) => w.name.normalize("NFC").toLocaleLowerCase("vi") === typed || code === typed);
    return byName ? byName[0] : text.trim();
  }

  async byNumber(form) {
    this.say("");
    this.results.replaceChildren();
    const params = { ward: this.wardCode(form.get("ward")), sheet: form.get("sheet"), parcel: form.get("parcel") };
    try {
      const parcel = await getJSON(`/api/parcels/lookup?${query(params)}`);
      this.showResults([parcel]);
      await this.open(parcel);
    } catch (err) {
      this.say(err instanceof ApiError && err.status === 404 ? t("search.notFound") : `${t("app.error")}: ${err.message}`);
    }
  }

  async byAddress(text) {
    this.say("");
    this.results.replaceChildren();
    const words = String(text || "").trim().split(/\s+/).filter(Boolean).slice(0, 6);
    if (!words.length) return;
    // one LIKE per word, so "Đường số 1 Phường 4" matches "201 Đường số 1, Phường 4, Quận 8"
    const filter = words.map((w) => `address LIKE '%${w.replace(/'/g, "''").replace(/[%_\\]/g, "")}%'`).join(" AND ");
    try {
      const fc = await getJSON(`/ogc/collections/parcels/items?${query({ filter, "filter-lang": "cql2-text", limit: 20, f: "json" })}`);
      if (!fc.features.length) {
        this.say(t("search.notFound"));
        return;
      }
      this.say(t("search.results", { count: fc.numberMatched ?? fc.features.length }));
      this.showResults(fc.features);
      if (fc.features.length === 1) await this.open(fc.features[0]);
    } catch (err) {
      this.say(`${t("app.error")}: ${err.message}`);
    }
  }

  showResults(features) {
    this.results.replaceChildren(...features.map((f) => {
      const p = f.properties;
      return el("li", {},
        el("button", { type: "button", class: "result-item", onclick: () => this.open(f) },
          el("b", { text: t("card.title", { parcel: p.parcel_no, sheet: p.sheet_no }) }),
          el("span", { text: ` · ${wardLabel(this.app.wards, p.ward_code)}` }),
          el("br"),
          el("small", { text: `${p.address || ""} · ${landUseName(p.land_use)}` })));
    }));
  }

  async open(feature) {
    fitGeometry(this.app.map, feature.geometry);
    await this.app.card.show(feature);
  }

  say(text) {
    this.message.textContent = text;
  }
}
