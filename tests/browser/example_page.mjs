// Opens examples/browser/index.html in Debian's headless Chromium (playwright-core) as a user would,
// with the broker's WebSocket URL and an API key in the fragment. Protocol with the Python test on
// stdout: "READY <topic>" once the page is subscribed, then one JSON line with the recognitions it shows.
import { chromium } from 'playwright-core';

const [pageUrl, timeoutMs] = process.argv.slice(2);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
         '--disable-component-update', '--disable-sync'],
});
try {
  const page = await browser.newPage();
  const problems = [];
  page.on('pageerror', (error) => problems.push(String(error)));
  page.on('requestfailed', (request) => problems.push(`failed to load ${request.url()}`));
  await page.goto(pageUrl);
  try {
    await page.waitForFunction(() => document.body.dataset.watching, null, { timeout: 30000 });
  } catch (error) {
    const status = await page.textContent('#status');
    throw new Error(`page not watching: ${status}; ${problems.join('; ')}`);
  }
  console.log(`READY ${await page.evaluate(() => document.body.dataset.watching)}`);
  await page.waitForSelector('#events li.recognized', { timeout: Number(timeoutMs || 120000) });
  console.log(JSON.stringify(await page.$$eval('#events li.recognized', (items) => items.map((li) => ({
    subject: li.dataset.subject, camera: li.dataset.camera, text: li.textContent,
    crop: Boolean(li.querySelector('img[src^="data:image/jpeg;base64,"]')),
  })))));
} finally {
  await browser.close();
}
