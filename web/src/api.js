// Talking to the server: JSON in, JSON out, problem+json errors as ApiError. The endpoints the
// page may use are discovered once from /openapi (generated from the server's routes), so the
// page never probes for an endpoint that does not exist.

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || problem?.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
  }
}

export async function request(method, url, body, headers = {}) {
  const init = { method, headers: { Accept: "application/json", ...headers }, credentials: "same-origin" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const resp = await fetch(url, init);
  const type = resp.headers.get("Content-Type") || "";
  const data = type.includes("json") ? await resp.json() : await resp.text();
  if (!resp.ok) throw new ApiError(resp.status, typeof data === "object" ? data : { detail: data });
  return data;
}

export const getJSON = (url) => request("GET", url);
export const postJSON = (url, body, headers) => request("POST", url, body, headers);

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, v);
  return q.toString();
}

/** The server's routes, from its OpenAPI document: {path: [methods]}. */
export class Capabilities {
  constructor(paths) {
    this.paths = paths;
  }

  static async load() {
    try {
      const doc = await getJSON("/openapi");
      const paths = {};
      for (const [path, ops] of Object.entries(doc.paths || {})) paths[path] = Object.keys(ops);
      return new Capabilities(paths);
    } catch {
      return new Capabilities({});
    }
  }

  has(path, method = "get") {
    return (this.paths[path] || []).includes(method);
  }

  /** The first path of `candidates` (OpenAPI templates) the server has for `method`, or null. */
  first(candidates, method = "get") {
    return candidates.find((p) => this.has(p, method)) || null;
  }

  /** The first server path matching a regular expression, or null. */
  match(regex, method = "get") {
    return Object.keys(this.paths).find((p) => regex.test(p) && this.has(p, method)) || null;
  }
}

/** Fill an OpenAPI path template: fill("/a/{id}", {id: 3}) -> "/a/3". */
export function fill(template, values) {
  return template.replace(/\{(\w+)\}/g, (_, k) => encodeURIComponent(values[k] ?? Object.values(values)[0]));
}
