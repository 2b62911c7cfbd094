// Map label glyphs: signed-distance-field glyph ranges (MapLibre's {fontstack}/{start}-{end}.pbf)
// generated at build time with fontnik from DejaVu Sans, which covers Vietnamese (Debian's
// fonts-dejavu-core, installed by ./dev setup). The server serves them at /glyphs/...; the page
// loads no glyphs from any other origin.
import { createRequire } from "node:module";
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const require = createRequire(import.meta.url);

/** Fonts turned into glyph ranges: font stack name (what styles put in text-font) -> file name. */
export const FONTS = {
  "DejaVu Sans Book": "DejaVuSans.ttf",
};
export const FONT_DIR = process.env.GLYPH_FONT_DIR || "/usr/share/fonts/truetype/dejavu";
const RANGE = 256;
const LAST = 65535;

function range(fontnik, font, start, end) {
  return new Promise((resolve, reject) => {
    fontnik.range({ font, start, end }, (err, data) => (err ? reject(err) : resolve(data)));
  });
}

/**
 * Write every 256-glyph range of the Basic Multilingual Plane for each font into
 * outDir/{fontstack}/{start}-{end}.pbf (ranges a font does not cover are small empty messages,
 * so any label text finds its range). A build stamp skips fonts whose file has not changed.
 */
export async function buildGlyphs(outDir, cacheDir) {
  const fontnik = require("fontnik");
  for (const [stack, file] of Object.entries(FONTS)) {
    const path = join(FONT_DIR, file);
    if (!existsSync(path)) {
      throw new Error(`font ${path} not found: install Debian's fonts-dejavu-core (./dev setup) or set GLYPH_FONT_DIR`);
    }
    const stat = statSync(path);
    const stamp = `${file} ${stat.size} ${stat.mtimeMs}`;
    const dir = join(outDir, stack);
    const cached = join(cacheDir, stack);
    mkdirSync(dir, { recursive: true });
    if (existsSync(join(cached, "stamp")) && readFileSync(join(cached, "stamp"), "utf8") === stamp) {
      copyRanges(cached, dir);
      continue;
    }
    const font = readFileSync(path);
    mkdirSync(cached, { recursive: true });
    for (let start = 0; start <= LAST; start += RANGE) {
      const end = Math.min(start + RANGE - 1, LAST);
      writeFileSync(join(cached, `${start}-${end}.pbf`), await range(fontnik, font, start, end));
    }
    writeFileSync(join(cached, "stamp"), stamp);
    copyRanges(cached, dir);
  }
}

function copyRanges(from, to) {
  for (let start = 0; start <= LAST; start += RANGE) {
    const name = `${start}-${Math.min(start + RANGE - 1, LAST)}.pbf`;
    writeFileSync(join(to, name), readFileSync(join(from, name)));
  }
}
