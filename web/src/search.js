// Parcel search for officers: by ward + map sheet + parcel number (/api/parcels/lookup) or by
// address (OGC API Features items with a CQL2 filter on the address).
import { ApiError, getJSON, query } from "./api.js";
import { landUseName } from "./card.js";
import { el } from "./dom.js";
import { t } from "./i18n.js";
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
  }

  /** Ward codes seen in the loaded parcel tiles feed the ward field's suggestions. */
  refreshWards() {
    if (!this.app.map.getSource("parcels")) return;
    const wards = new Set(this.app.map.querySourceFeatures("parcels", { sourceLayer: "parcels" })
      .map((f) => f.properties.ward_code).filter(Boolean));
    const list = document.getElementById("ward-list");
    const have = new Set([...list.options].map((o) => o.value));
    for (const w of [...wards].sort()) if (!have.has(w)) list.append(el("option", { value: w }));
  }

  async byNumber(form) {
    this.say("");
    this.results.replaceChildren();
    const params = { ward: form.get("ward").trim(), sheet: form.get("sheet"), parcel: form.get("parcel") };
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
          el("span", { text: ` · ${p.ward_code}` }),
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
