// The public dossier status page (/tra-cuu): no login; shows the state and the timeline of a
// dossier by its code, and nothing personal (the server's public endpoint returns no personal
// data, and this page only displays code, type, state, dates and step names).
import "./styles.css";

import { ApiError, Capabilities, getJSON } from "./api.js";
import { el, kindName } from "./dom.js";
import { fmtDate, lang, onLangChange, setLang, t, translate } from "./i18n.js";

const STATUS_PATTERNS = [
  /^\/public\/dossiers\/\{[^}]+\}$/,
  /^\/api\/(licensing\/)?public\/dossiers\/\{[^}]+\}(\/status)?$/,
  /^\/api\/(licensing\/)?dossiers\/\{[^}]+\}\/(public|status)$/,
  /^\/(api\/)?tra-cuu\/\{[^}]+\}$/,
];
const CODE_RE = /^[A-Za-z0-9][A-Za-z0-9-]{0,39}$/;

async function main() {
  translate(document);
  document.getElementById("lang-switch").addEventListener("click", () => setLang(lang() === "vi" ? "en" : "vi"));
  const caps = await Capabilities.load();
  const path = STATUS_PATTERNS.map((re) => caps.match(re)).find(Boolean);
  const message = document.getElementById("status-message");
  const result = document.getElementById("status-result");
  let last = null;
  const show = (data) => {
    last = data;
    result.replaceChildren(...renderStatus(data));
    result.hidden = false;
  };
  onLangChange(() => last && show(last));
  if (!path) {
    message.textContent = t("public.unavailable");
    message.dataset.i18n = "public.unavailable";
    message.classList.add("unavailable");
  }
  document.getElementById("status-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    result.hidden = true;
    const code = new FormData(e.target).get("code").trim();
    if (!CODE_RE.test(code)) {
      message.textContent = t("public.invalid");
      return;
    }
    if (!path) return;
    message.textContent = t("app.loading");
    try {
      show(await getJSON(path.replace(/\{[^}]+\}/, encodeURIComponent(code))));
      message.textContent = "";
    } catch (err) {
      message.textContent = err instanceof ApiError && err.status === 404 ? t("public.notFound", { code }) : `${t("app.error")}: ${err.message}`;
    }
  });
  const fromUrl = new URLSearchParams(window.location.search).get("ma");
  if (fromUrl) {
    document.getElementById("dossier-code").value = fromUrl;
    document.getElementById("status-form").requestSubmit();
  }
  document.body.dataset.ready = "true";
}

function renderStatus(d) {
  const timeline = d.timeline || d.events || d.history || [];
  return [
    el("h2", { id: "status-code", text: d.code }),
    el("p", { class: "status-state" }, `${t("public.state")}: `,
      el("span", { id: "status-state", class: `state state-${d.state}`, text: t(`state.${d.state}`) })),
    d.kind ? el("p", { text: `${t("public.kind")}: ${kindName(d.kind)}` }) : null,
    d.due_at || d.due_date ? el("p", { text: `${t("public.due")}: ${fmtDate(d.due_at || d.due_date)}` }) : null,
    el("h3", { text: t("public.timeline") }),
    el("ol", { class: "timeline", id: "status-timeline" }, ...timeline.map((ev) => el("li", {},
      el("time", { text: fmtDate(ev.at || ev.date || ev.created_at) }), " ",
      el("span", { class: `state state-${ev.to_state || ev.state}`, text: t(`state.${ev.to_state || ev.state}`) })))),
  ].filter(Boolean);
}

main();
