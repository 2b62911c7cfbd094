// Building DOM nodes without innerHTML (text is always set as text, never parsed as HTML).
import { t } from "./i18n.js";

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) node.append(c);
  return node;
}

/** The translated name of a dossier kind (the code itself when the catalogue has none). */
export function kindName(kind) {
  if (!kind) return "";
  const key = `kind.${kind}`;
  const name = t(key);
  return name === key ? kind : name;
}
