// Flood scenarios for planners: rain return period, tide level and duration; start a run,
// follow its progress, play the depth over time on the map, list affected assets and export them
// as CSV. Works against the flood API when the server has one (POST /api/flood/runs); otherwise
// the form stays usable and the page says the simulation service is not available yet.
import { getJSON, postJSON } from "./api.js";
import { el } from "./dom.js";
import { fmt, fmtDate, t } from "./i18n.js";

const START_PATH = "/api/flood/runs";
const LEGEND_PATH = "/api/flood/legend.json";
const POLL_MS = 1000;
const PLAY_MS = 1200;
/** Map source and layer of the run's depth (raster tiles of one saved time step). */
export const FLOOD_SOURCE = "flood-run";

export class FloodPanel {
  constructor(app) {
    this.app = app;
    this.message = document.getElementById("flood-message");
    this.runBox = document.getElementById("flood-run");
    this.progress = document.getElementById("flood-progress");
    this.statusText = document.getElementById("flood-status");
    this.timeBox = document.getElementById("flood-time-box");
    this.slider = document.getElementById("flood-time");
    this.sliderLabel = document.getElementById("flood-time-label");
    this.playButton = document.getElementById("flood-play");
    this.affected = document.getElementById("flood-affected");
    this.steps = [];
    this.items = null;
    document.getElementById("flood-form").addEventListener("submit", (e) => {
      e.preventDefault();
      this.start(new FormData(e.target));
    });
    this.slider.addEventListener("input", () => this.showStep(Number(this.slider.value)));
    this.playButton.addEventListener("click", () => this.togglePlay());
  }

  get available() {
    return this.app.caps.has(START_PATH, "post");
  }

  refresh() {
    document.getElementById("flood-start").disabled = !this.available || this.running;
    this.message.textContent = this.available ? "" : t("flood.notAvailable");
    this.message.classList.toggle("unavailable", !this.available);
    if (this.run) this.showStatus(this.run);
    if (this.steps.length) this.showStep(Number(this.slider.value));
    if (this.items) this.renderAffected(this.items);
    this.playButton.textContent = t(this.timer ? "flood.pause" : "flood.play");
  }

  /** The request body of the flood API: the planner's rain, tide peak and duration. */
  choice(form) {
    const rp = form.get("return_period");
    return {
      rain: rp === "stress" ? { event: "stress" } : { return_period_years: Number(rp) },
      tide_level_m: Number(form.get("tide_level")),
      duration_hours: Number(form.get("duration_hours")),
    };
  }

  async start(form) {
    if (!this.available) return this.refresh();
    this.stop();
    this.clearResults();
    try {
      this.running = true;
      this.refresh();
      const run = await postJSON(START_PATH, this.choice(form));
      this.runBox.hidden = false;
      this.poll(run);
    } catch (err) {
      this.running = false;
      this.refresh();
      this.message.textContent = `${t("app.error")}: ${err.message}`;
    }
  }

  showStatus(run) {
    const status = run.status || "queued";
    const pct = status === "succeeded" ? 100 : Number(run.progress || 0);
    this.progress.value = pct;
    this.progress.dataset.status = status;
    const error = status === "failed" && run.error ? ` (${run.error})` : "";
    this.statusText.textContent = `${t(`flood.status.${status}`)} — ${fmt(pct, 0)} %${error}`;
  }

  async poll(run) {
    this.run = run;
    this.url = run.links?.find((l) => l.rel === "self")?.href || `${START_PATH}/${run.id}`;
    this.showStatus(run);
    const status = run.status || "queued";
    if (["succeeded", "failed", "cancelled"].includes(status)) {
      this.running = false;
      this.refresh();
      if (status === "succeeded") await this.showResults(run);
      return;
    }
    setTimeout(async () => {
      try {
        this.poll(await getJSON(this.url));
      } catch (err) {
        this.running = false;
        this.message.textContent = `${t("app.error")}: ${err.message}`;
        this.refresh();
      }
    }, POLL_MS);
  }

  async showResults(run) {
    const result = run.result || {};
    this.steps = result.times || [];
    this.validTimes = result.valid_times || [];
    this.tiles = run.links?.find((l) => l.rel === "tiles")?.href;
    this.timeBox.hidden = !(this.steps.length && this.tiles);
    this.slider.max = String(Math.max(0, this.steps.length - 1));
    this.slider.value = this.slider.max;
    await this.showLegend();
    this.showStep(Number(this.slider.value));
    const data = await getJSON(`${this.url}/affected`);
    this.renderAffected(data.items || []);
  }

  async showLegend() {
    const legend = await getJSON(LEGEND_PATH).catch(() => null);
    if (!legend) return;
    const bar = document.getElementById("flood-legend-bar");
    bar.src = LEGEND_PATH.replace(".json", ".png");
    document.getElementById("flood-legend-range").textContent = `${fmt(legend.min, 1)}–${fmt(legend.max, 1)} ${legend.unit}`;
  }

  /** The map shows the depth at saved step i (raster tiles of that time step). */
  showStep(i) {
    const step = this.steps[i];
    if (step === undefined || !this.tiles) return;
    const when = this.validTimes[i] ? fmtDate(this.validTimes[i]) : "";
    this.sliderLabel.textContent = `${t("flood.elapsed", { h: Math.floor(step / 3600), m: String(Math.round((step % 3600) / 60)).padStart(2, "0") })}${when ? ` · ${when}` : ""}`;
    const url = `${window.location.origin}${this.tiles.replace("{t}", String(step))}`;
    const map = this.app.map;
    const source = map.getSource(FLOOD_SOURCE);
    if (source) {
      source.setTiles([url]);
    } else {
      map.addSource(FLOOD_SOURCE, { type: "raster", tileSize: 256, tiles: [url], maxzoom: 20 });
      map.addLayer({ id: FLOOD_SOURCE, type: "raster", source: FLOOD_SOURCE, paint: { "raster-opacity": 0.8, "raster-fade-duration": 0 } },
        map.getLayer("selection-fill") ? "selection-fill" : undefined);
    }
    this.app.emit("flood-time", step);
  }

  togglePlay() {
    if (this.timer) return this.stop();
    if (!this.steps.length) return;
    if (Number(this.slider.value) >= this.steps.length - 1) this.slider.value = "0";
    this.showStep(Number(this.slider.value));
    this.timer = setInterval(() => {
      const next = Number(this.slider.value) + 1;
      if (next >= this.steps.length) return this.stop();
      this.slider.value = String(next);
      this.showStep(next);
    }, PLAY_MS);
    this.playButton.textContent = t("flood.pause");
  }

  stop() {
    clearInterval(this.timer);
    this.timer = null;
    this.playButton.textContent = t("flood.play");
  }

  clearResults() {
    this.steps = [];
    this.items = null;
    this.run = null;
    this.timeBox.hidden = true;
    this.affected.replaceChildren();
    const map = this.app.map;
    if (map.getLayer(FLOOD_SOURCE)) map.removeLayer(FLOOD_SOURCE);
    if (map.getSource(FLOOD_SOURCE)) map.removeSource(FLOOD_SOURCE);
  }

  renderAffected(items) {
    this.items = items;
    if (!items.length) {
      this.affected.replaceChildren(el("p", { class: "hint", text: t("flood.noAffected") }));
      return;
    }
    const cols = [
      ["kind", "flood.kind", (r) => t(`flood.kind.${r.kind}`)],
      ["name", "flood.asset", (r) => r.name],
      ["max_depth", "flood.maxDepth", (r) => fmt(r.max_depth, 2)],
      ["mean_depth", "flood.meanDepth", (r) => fmt(r.mean_depth, 2)],
      ["wet_fraction", "flood.wetShare", (r) => `${fmt(r.wet_fraction * 100, 0)} %`],
    ];
    this.affected.replaceChildren(
      el("h3", { text: `${t("flood.affected")} (${items.length})` }),
      el("table", { class: "table", id: "flood-affected-table" },
        el("thead", {}, el("tr", {}, ...cols.map(([, key]) => el("th", { text: t(key) })))),
        el("tbody", {}, ...items.map((r) => el("tr", { "data-kind": r.kind }, ...cols.map(([, , value]) => el("td", { text: value(r) })))))),
      el("a", { class: "btn", id: "flood-csv", href: `${this.url}/affected?f=csv`, download: `flood-run-${this.run.id}-affected.csv`, text: t("flood.export") }),
    );
  }
}
