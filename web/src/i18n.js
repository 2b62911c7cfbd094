// UI strings: Vietnamese by default, English on request. Every visible string comes from
// i18n/vi.json or i18n/en.json; elements carry data-i18n (text), data-i18n-placeholder or
// data-i18n-title and are re-translated when the language changes.
import vi from "./i18n/vi.json";
import en from "./i18n/en.json";

const CATALOGUES = { vi, en };
const STORAGE_KEY = "gisserver.lang";
const listeners = [];
let current = pickInitial();

function pickInitial() {
  try {
    const stored = window.localStorage.getItem(STORAGE_KEY);
    if (stored && CATALOGUES[stored]) return stored;
  } catch {
    // storage may be disabled; Vietnamese is the default anyway
  }
  return "vi";
}

export function lang() {
  return current;
}

export function t(key, params = {}) {
  const text = CATALOGUES[current][key] ?? CATALOGUES.vi[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => (name in params ? String(params[name]) : `{${name}}`));
}

export function has(key) {
  return key in CATALOGUES[current];
}

export function setLang(code) {
  if (!CATALOGUES[code]) return;
  current = code;
  try {
    window.localStorage.setItem(STORAGE_KEY, code);
  } catch {
    // not persisted; fine
  }
  translate(document);
  for (const fn of listeners) fn(code);
}

export function onLangChange(fn) {
  listeners.push(fn);
}

export function translate(root) {
  document.documentElement.lang = current;
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-placeholder]")) el.placeholder = t(el.dataset.i18nPlaceholder);
  for (const el of root.querySelectorAll("[data-i18n-title]")) el.title = t(el.dataset.i18nTitle);
  if (root === document && document.body.dataset.titleKey) document.title = t(document.body.dataset.titleKey);
}

const NUMBER_LOCALES = { vi: "vi-VN", en: "en-GB" };

export function fmt(value, digits = 2) {
  if (value === null || value === undefined || Number.isNaN(Number(value))) return "—";
  return Number(value).toLocaleString(NUMBER_LOCALES[current], {
    minimumFractionDigits: 0,
    maximumFractionDigits: digits,
  });
}

export function fmtDate(value) {
  if (!value) return "—";
  const d = new Date(value);
  if (Number.isNaN(d.getTime())) return String(value);
  return d.toLocaleString(NUMBER_LOCALES[current], { dateStyle: "medium", timeStyle: "short" });
}
