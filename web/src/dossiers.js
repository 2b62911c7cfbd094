// Permit dossiers for staff: the list (code, type, state, due date); selecting one shows its
// timeline and the transitions the server allows the caller's role (the server's state machine
// decides; the page only offers what it is told and sends the dossier's ETag for locking).
import { getJSON, postJSON } from "./api.js";
import { el, kindName } from "./dom.js";
import { fmtDate, t } from "./i18n.js";

const LIST_PATH = "/api/dossiers";
const ONE_PATH = "/api/dossiers/{dossier_id}";
const MOVE_PATH = "/api/dossiers/{dossier_id}/transitions";

export class DossierList {
  constructor(app) {
    this.app = app;
    this.message = document.getElementById("dossiers-message");
    this.table = document.getElementById("dossiers-table");
    this.detail = document.getElementById("dossier-detail");
    document.getElementById("dossiers-refresh").addEventListener("click", () => this.load());
  }

  get available() {
    return this.app.caps.has(LIST_PATH) && this.app.caps.has(ONE_PATH);
  }

  async load(keepMessage = false) {
    this.table.hidden = true;
    this.detail.replaceChildren();
    if (!this.available) {
      this.message.textContent = `${t("app.unavailable")} (GET ${LIST_PATH})`;
      this.message.classList.add("unavailable");
      return;
    }
    this.message.classList.remove("unavailable");
    if (!keepMessage) this.message.textContent = t("app.loading");
    try {
      this.render(await getJSON(LIST_PATH));
      if (!keepMessage) this.message.textContent = "";
    } catch (err) {
      this.message.textContent = `${t("app.error")}: ${err.message}`;
    }
  }

  render(items) {
    if (!items.length) this.message.textContent = t("dossiers.empty");
    const tbody = this.table.querySelector("tbody");
    tbody.replaceChildren(...items.map((d) => el("tr", { class: "clickable", "data-code": d.code, onclick: () => this.open(d.id) },
      el("td", {}, el("b", { text: d.code }), el("br"), el("small", { class: "hint", text: kindName(d.kind) })),
      el("td", {}, el("span", { class: `state state-${d.state}`, text: t(`state.${d.state}`) })),
      el("td", { text: fmtDate(d.due_date) }))));
    this.table.hidden = !items.length;
    if (items.length) this.detail.append(el("p", { class: "hint", text: t("dossiers.select") }));
  }

  async open(id) {
    try {
      const d = await getJSON(ONE_PATH.replace("{dossier_id}", encodeURIComponent(id)));
      const actions = d.allowed_transitions || [];
      const canMove = this.app.caps.has(MOVE_PATH, "post");
      this.detail.replaceChildren(el("div", { class: "dossier-detail" },
        el("h3", { text: `${d.code} — ${t(`state.${d.state}`)}` }),
        el("h4", { text: t("dossiers.timeline") }),
        el("ol", { class: "timeline" }, ...(d.timeline || []).map((ev) => el("li", {},
          el("time", { text: fmtDate(ev.at) }), " ", el("span", { text: t(`state.${ev.to_state}`) }),
          ev.actor ? el("small", { class: "hint", text: ` · ${ev.actor}` }) : null))),
        el("h4", { text: t("dossiers.actions") }),
        actions.length && canMove
          ? el("div", { class: "row" }, ...actions.map((state) => el("button", { type: "button", class: "btn small",
            "data-to": state, text: t(`state.${state}`), onclick: () => this.move(d, state) })))
          : el("p", { class: "hint", text: t("dossiers.noActions") })));
    } catch (err) {
      this.message.textContent = `${t("app.error")}: ${err.message}`;
    }
  }

  async move(dossier, state) {
    try {
      const url = MOVE_PATH.replace("{dossier_id}", encodeURIComponent(dossier.id));
      await postJSON(url, { to: state }, { "If-Match": dossier.etag });
      this.message.textContent = t("dossiers.moved", { code: dossier.code, state: t(`state.${state}`) });
      await this.load(true);
      await this.open(dossier.id);
    } catch (err) {
      this.message.textContent = `${t("app.error")}: ${err.message}`;
    }
  }
}
