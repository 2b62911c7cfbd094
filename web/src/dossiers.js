// Permit dossiers for staff: the list with state and due date, and the transitions the server
// allows the caller's role (the server's state machine decides; this page only offers them).
import { getJSON, postJSON } from "./api.js";
import { el } from "./dom.js";
import { fmtDate, t } from "./i18n.js";

const LIST_PATHS = ["/api/licensing/dossiers", "/api/dossiers"];

export class DossierList {
  constructor(app) {
    this.app = app;
    this.message = document.getElementById("dossiers-message");
    this.table = document.getElementById("dossiers-table");
    document.getElementById("dossiers-refresh").addEventListener("click", () => this.load());
  }

  get listPath() {
    return this.app.caps.first(LIST_PATHS);
  }

  transitionPath() {
    return this.app.caps.match(/dossiers\/\{[^}]+\}\/(transitions|transition|events|state)$/, "post");
  }

  async load() {
    this.table.hidden = true;
    if (!this.listPath) {
      this.message.textContent = `${t("app.unavailable")} (GET ${LIST_PATHS[0]})`;
      this.message.classList.add("unavailable");
      return;
    }
    this.message.classList.remove("unavailable");
    this.message.textContent = t("app.loading");
    try {
      const data = await getJSON(this.listPath);
      const items = Array.isArray(data) ? data : data.dossiers || data.items || [];
      this.render(items);
    } catch (err) {
      this.message.textContent = `${t("app.error")}: ${err.message}`;
    }
  }

  render(items) {
    this.message.textContent = items.length ? "" : t("dossiers.empty");
    const tbody = this.table.querySelector("tbody");
    tbody.replaceChildren(...items.map((d) => el("tr", {},
      el("td", { text: d.code }),
      el("td", {}, el("span", { class: `state state-${d.state}`, text: t(`state.${d.state}`) })),
      el("td", { text: fmtDate(d.due_at || d.due_date) }),
      el("td", {}, ...this.actions(d)))));
    this.table.hidden = !items.length;
  }

  actions(dossier) {
    const next = dossier.allowed_next || dossier.allowed_transitions || dossier.next_states || [];
    const path = this.transitionPath();
    if (!path) return [];
    return next.map((state) => el("button", { type: "button", class: "btn small", text: t(`state.${state}`),
      onclick: () => this.move(path, dossier, state) }));
  }

  async move(path, dossier, state) {
    try {
      const url = path.replace(/\{[^}]+\}/, encodeURIComponent(dossier.id ?? dossier.code));
      await postJSON(url, { to: state, to_state: state, version: dossier.version });
      this.message.textContent = t("dossiers.moved", { code: dossier.code, state: t(`state.${state}`) });
      await this.load();
    } catch (err) {
      this.message.textContent = `${t("app.error")}: ${err.message}`;
    }
  }
}
