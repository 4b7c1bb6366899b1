// Bundles the browser side at install time (make install): web/src -> web/dist, served by every
// tokenbench HTTP origin at /web/ (servers/http/web.py). Nothing is fetched at run time.
import { build } from "esbuild";
import { copyFileSync, mkdirSync } from "node:fs";

const here = new URL(".", import.meta.url).pathname;
mkdirSync(`${here}dist`, { recursive: true });
await build({
  entryPoints: { bench: `${here}src/bench.js`, app: `${here}src/app.jsx` },
  outdir: `${here}dist`,
  bundle: true,
  minify: true,
  format: "iife",
  target: "chrome110",
  jsx: "automatic",
  define: { "process.env.NODE_ENV": '"production"' },
  logLevel: "warning",
});
for (const page of ["bench.html", "app.html"]) copyFileSync(`${here}src/${page}`, `${here}dist/${page}`);
