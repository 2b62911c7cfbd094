// Bundles the web map application into gisserver/static/app/ (build output, not committed).
// Everything the page needs is bundled: MapLibre GL JS and its CSS, proj4, the map label glyphs
// (web/glyphs.mjs); nothing from a CDN.
import { build } from "esbuild";
import { cpSync, mkdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { buildGlyphs } from "./glyphs.mjs";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const out = join(root, "gisserver", "static", "app");
const watch = process.argv.includes("--dev");

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });

await build({
  entryPoints: {
    app: join(root, "web", "src", "main.js"),
    public: join(root, "web", "src", "public.js"),
  },
  outdir: out,
  bundle: true,
  format: "esm",
  target: ["es2022"],
  minify: !watch,
  sourcemap: true,
  legalComments: "linked",
  loader: { ".json": "json" },
  logLevel: "warning",
});

for (const page of ["index.html", "tra-cuu.html", "favicon.svg"]) {
  cpSync(join(root, "web", page), join(out, page));
}
await buildGlyphs(join(out, "glyphs"), join(root, "node_modules", ".cache", "gisserver-glyphs"));
console.log(`web app built into ${out}`);
