// Flood scenarios for planners: rain return period, tide level and duration; start a run,
// follow its progress, play the results over time, list affected assets and export them as CSV.
// Works against the flood API when the server has one; otherwise the form stays usable and the
// page says the simulation service is not available yet.
import { getJSON, postJSON } from "./api.js";
import { el } from "./dom.js";
import { fmt, t } from "./i18n.js";

const START_PATHS = ["/api/flood/runs", "/api/flood/scenarios", "/api/flood/simulations", "/api/flood/jobs"];
const POLL_MS = 1500;

export class FloodPanel {
  constructor(app) {
    this.app = app;
    this.message = document.getElementById("flood-message");
    this.runBox = document.getElementById("flood-run");
    this.progress = document.getElementById("flood-progress");
    this.statusText = document.getElementById("flood-status");
    this.slider = document.getElementById("flood-time");
    this.sliderLabel = document.getElementById("flood-time-label");
    this.affected = document.getElementById("flood-affected");
    document.getElementById("flood-form").addEventListener("submit", (e) => {
      e.preventDefault();
      this.start(new FormData(e.target));
    });
    this.slider.addEventListener("input", () => this.showStep(Number(this.slider.value)));
  }

  get startPath() {
    return this.app.caps.first(START_PATHS, "post");
  }

  refresh() {
    const available = Boolean(this.startPath);
    document.getElementById("flood-start").disabled = !available;
    this.message.textContent = available ? "" : t("flood.notAvailable");
    this.message.classList.toggle("unavailable", !available);
  }

  /** The scenario in the shape of flood.scenarios.Scenario (rain, tide, duration in seconds). */
  scenario(form) {
    const rp = form.get("return_period");
    const hours = Number(form.get("duration_hours"));
    const peak = Number(form.get("tide_level"));
    const stress = rp === "stress";
    const scenario = {
      title: stress ? t("flood.stress") : t(`flood.rp${rp}`),
      duration_s: hours * 3600,
      rain: stress ? { kind: "stress-2018" }
        : { kind: "design", return_period_y: Number(rp), duration_min: 180, block_min: 10, peak_position: 0.5 },
      tide: { peak_m: peak, peak_at_s: Math.min(hours * 3600, stress ? 43200 : 5400) },
    };
    // the stored default scenario with the same rain, when the planner keeps its tide (1.60 m)
    const key = stress ? "stress-2018" : `design-${rp}y`;
    return { scenario_key: key, scenario };
  }

  async start(form) {
    const path = this.startPath;
    if (!path) return this.refresh();
    try {
      const run = await postJSON(path, this.scenario(form));
      this.runBox.hidden = false;
      this.poll(run);
    } catch (err) {
      this.message.textContent = `${t("app.error")}: ${err.message}`;
    }
  }

  async poll(run) {
    const url = run.links?.find((l) => l.rel === "self")?.href || run.url || `${this.startPath}/${run.id}`;
    const status = run.status || "queued";
    this.progress.value = Number(run.progress || 0);
    this.statusText.textContent = `${t(`flood.status.${status}`)} — ${fmt(run.progress || 0, 0)} %`;
    if (status === "succeeded") return this.showResults(run, url);
    if (status === "failed" || status === "cancelled") return;
    setTimeout(async () => this.poll(await getJSON(url).catch(() => ({ ...run, status: "failed" }))), POLL_MS);
  }

  async showResults(run, url) {
    const result = run.result || {};
    this.steps = result.times || result.time_steps || [];
    const box = document.getElementById("flood-time-box");
    box.hidden = !this.steps.length;
    this.slider.max = Math.max(0, this.steps.length - 1);
    this.slider.value = this.slider.max;
    this.showStep(Number(this.slider.value));
    const assets = await getJSON(`${url}/affected`).catch(() => result.affected || []);
    this.renderAffected(Array.isArray(assets) ? assets : assets.items || assets.features || []);
  }

  showStep(i) {
    const step = this.steps?.[i];
    this.sliderLabel.textContent = step === undefined ? "" : typeof step === "number" ? `${fmt(step / 3600, 2)} h` : String(step);
    this.app.emit("flood-time", step);
  }

  renderAffected(items) {
    if (!items.length) {
      this.affected.replaceChildren(el("p", { class: "hint", text: t("flood.noAffected") }));
      return;
    }
    const rows = items.map((a) => a.properties || a);
    const cols = [["name", "flood.asset"], ["kind", "flood.kind"], ["max_depth", "flood.maxDepth"], ["duration_h", "flood.duration.above"]];
    this.affected.replaceChildren(
      el("h3", { text: t("flood.affected") }),
      el("table", { class: "table" },
        el("thead", {}, el("tr", {}, ...cols.map(([, k]) => el("th", { text: t(k) })))),
        el("tbody", {}, ...rows.map((r) => el("tr", {}, ...cols.map(([c]) => el("td", { text: typeof r[c] === "number" ? fmt(r[c], 2) : r[c] ?? "—" })))))),
      el("button", { type: "button", class: "btn", text: t("flood.export"), onclick: () => exportCsv(rows, cols) }),
    );
  }
}

export function toCsv(rows, cols) {
  const quote = (v) => {
    const s = v === null || v === undefined ? "" : String(v);
    return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  };
  return [cols.map(([c]) => c).join(","), ...rows.map((r) => cols.map(([c]) => quote(r[c])).join(","))].join("\r\n");
}

function exportCsv(rows, cols) {
  const blob = new Blob(["\ufeff", toCsv(rows, cols)], { type: "text/csv;charset=utf-8" });
  const a = el("a", { href: URL.createObjectURL(blob), download: "flood-affected-assets.csv" });
  document.body.append(a);
  a.click();
  a.remove();
}
