// gRPC-Web from headless Chromium: a page of another origin (served here,
// on a loopback port of its own) calls the gateway with Connect-ES's
// gRPC-Web transport, through real CORS preflights.
//
// usage: node browser_grpc_web.mjs BASE_URL DESCRIPTOR_SET TOKEN
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";
import { chromium } from "playwright-core";

const [baseUrl, descriptors, token] = process.argv.slice(2);
const built = await esbuild.build({
  entryPoints: [fileURLToPath(new URL("browser_entry.mjs", import.meta.url))],
  bundle: true,
  format: "iife",
  platform: "browser",
  write: false,
  logLevel: "silent",
});
const script = built.outputFiles[0].text;
const html = `<!doctype html><title>shop</title><script>${script.replaceAll("</script", "<\\/script")}</script>`;
const site = createServer((_, res) => res.writeHead(200, { "content-type": "text/html" }).end(html));
await new Promise((resolve) => site.listen(0, "127.0.0.1", resolve));
const origin = `http://127.0.0.1:${site.address().port}`;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox"],
});
try {
  const page = await browser.newPage();
  // The browser's own account of a failed call (CORS, network) goes to stderr.
  page.on("console", (m) => console.error(`console: ${m.text()}`));
  page.on("requestfailed", (r) => console.error(`failed: ${r.method()} ${r.url()} ${r.failure()?.errorText}`));
  await page.goto(`${origin}/`);
  const set = readFileSync(descriptors).toString("base64");
  const out = await page.evaluate(
    ([url, set, token]) => window.runScenario(url, set, token),
    [baseUrl, set, token],
  );
  console.log(JSON.stringify(out));
} finally {
  await browser.close();
  site.close();
}
