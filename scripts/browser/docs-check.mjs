// Opens the gateway's docs page in headless Chromium with every request
// outside loopback blocked (the page must work offline), checks that the
// operations are listed with what the protos' openapiv2 options say, runs
// "Try it out" on GET /v2/users/{id}, and writes a screenshot.
//
//   node docs-check.mjs [base-url] [screenshot-path]
import { chromium } from "playwright-core";

const base = process.argv[2] ?? "http://127.0.0.1:8080";
const shot = process.argv[3] ?? "docs-check.png";
const chromiumPath = process.env.CHROMIUM ?? "/usr/bin/chromium";

function fail(message) {
  console.error(`docs check failed: ${message}`);
  process.exitCode = 1;
}

const browser = await chromium.launch({
  executablePath: chromiumPath,
  headless: true,
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 1600 } });
  const offsite = [];
  await page.route("**/*", (route) => {
    const host = new URL(route.request().url()).hostname;
    if (host === "127.0.0.1" || host === "localhost") {
      return route.continue();
    }
    offsite.push(route.request().url());
    return route.abort();
  });
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(String(e)));

  await page.goto(`${base}/docs/`, { waitUntil: "networkidle" });
  await page.waitForSelector(".opblock", { timeout: 15000 });
  const operations = await page.locator(".opblock").count();
  console.log(`operations listed: ${operations}`);
  if (operations < 14) fail(`expected at least 14 operations, saw ${operations}`);
  for (const id of ["UserService_v1_GetUser", "UserService_v2_GetUser", "UserService_v2_DeactivateUser", "OrderService_CancelOrder", "InventoryService_BatchGetStock"]) {
    if ((await page.getByText(id, { exact: true }).count()) === 0) fail(`operation ${id} is not listed`);
  }

  // grpc-gateway's openapiv2 options in the shop's protos: an operation
  // summary, a tag description, an example request body.
  for (const text of ["Place an order", "Orders of the example shop's users"]) {
    if ((await page.getByText(text).count()) === 0) fail(`the page does not show "${text}" (openapiv2 options)`);
  }
  const create = page.locator("#operations-OrderService-OrderService_CreateOrder");
  await create.locator(".opblock-summary").click();
  const example = await create.locator(".body-param__example, .highlight-code").first().innerText({ timeout: 15000 });
  if (!example.includes("GC-7731")) fail(`CreateOrder's example body is not the proto's: ${example.slice(0, 200)}`);
  await create.locator(".opblock-summary").click();

  // Try it out: GET /v2/users/{id} with id = 1 (v2 comes from the backend by reflection).
  const op = page.locator("#operations-UserService_v2-UserService_v2_GetUser");
  await op.locator(".opblock-summary").click();
  // The gateway's Swagger UI starts with Try it out enabled; click it only if it is not.
  const tryIt = op.getByRole("button", { name: "Try it out" });
  if (await tryIt.isVisible()) await tryIt.click();
  await op.locator('tr[data-param-name="id"] input').fill("1");
  await op.getByRole("button", { name: "Execute" }).click();
  const status = op.locator(".live-responses-table tbody .response-col_status").first();
  await status.waitFor({ timeout: 15000 });
  const code = (await status.innerText()).trim();
  const body = await op.locator(".live-responses-table tbody .response-col_description").first().innerText();
  console.log(`try it out: GET /v2/users/1 -> ${code}`);
  if (code !== "200") fail(`Try it out answered ${code}`);
  if (!body.includes("ada@example.com")) fail(`Try it out body lacks the user: ${body.slice(0, 200)}`);

  await op.scrollIntoViewIfNeeded();
  await page.screenshot({ path: shot, fullPage: false });
  console.log(`screenshot: ${shot}`);
  if (offsite.length > 0) fail(`the page tried to reach beyond loopback: ${offsite.join(", ")}`);
  if (pageErrors.length > 0) fail(`page errors: ${pageErrors.join("; ")}`);
} finally {
  await browser.close();
}
