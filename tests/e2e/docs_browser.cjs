// Loads `<base>/docs` in headless Chromium (through playwright-core, with the system's
// Chromium) and prints one JSON line: whether an operation of the spec was rendered, the page's
// errors, and every URL the page requested. Used by test_docs_browser.py.
//
//   node docs_browser.cjs <base-url> <chromium-executable>
"use strict";

const { chromium } = require("playwright-core");

async function main() {
  const [base, executablePath] = process.argv.slice(2);
  const browser = await chromium.launch({
    executablePath,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
  const result = { requests: [], errors: [], rendered: false, summary: "" };
  try {
    const page = await browser.newPage();
    page.on("request", (r) => result.requests.push(r.url()));
    page.on("pageerror", (e) => result.errors.push(String(e)));
    page.on("console", (m) => {
      if (m.type() === "error") result.errors.push(m.text());
    });
    await page.goto(`${base}/docs`, { waitUntil: "load" });
    // Playwright's text selectors pierce RapiDoc's shadow DOM.
    const operation = page.getByText("Chat completion, plain or streamed (SSE)").first();
    await operation.waitFor({ state: "attached", timeout: 20000 });
    result.rendered = true;
    result.summary = await operation.textContent();
    // The "try it" server is this gateway, not the spec's example server.
    result.server = await page.evaluate(() => {
      const docs = document.querySelector("rapi-doc");
      return docs && docs.selectedServer ? docs.selectedServer.computedUrl : null;
    });
  } catch (e) {
    result.errors.push(String(e));
  } finally {
    await browser.close();
  }
  process.stdout.write(JSON.stringify(result) + "\n");
}

main().catch((e) => {
  process.stdout.write(JSON.stringify({ fatal: String(e) }) + "\n");
  process.exit(1);
});
