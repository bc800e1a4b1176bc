// bench/console.py's browser side: Debian's headless Chromium (playwright-core) against a running `facewatch
// serve` with cameras. Usage: node console_bench.mjs <json options>; options: base, apiKey, cameras (how many
// the live page must show), loads, seconds, shots (a folder for a screenshot, optional).
// 1. `loads` + 1 loads of /live, each in a fresh browser context (a first visit: empty cache; signed in by
//    the session put in sessionStorage before the page's scripts run); the first is a warm-up. Each gives its
//    paint timings and the page's own mark facewatch:live-ready (cameras listed, events subscribed).
// 2. For `seconds`, the console's live page and a bare page (nothing but @stomp/stompjs, subscribed to the
//    same topic) side by side: the moment each event entered the live page's DOM (its facewatch:event-shown
//    mark) and the moment the bare page's STOMP client handed it over, both as epoch milliseconds.
// Prints one JSON line: {"ok": true, loads: [...], shown: [...], delivered: [...]} or {"ok": false, "error"}.
import { chromium } from 'playwright-core';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';

const opts = JSON.parse(process.argv[2] || '{}');
const stompBundle = fileURLToPath(new URL('./node_modules/@stomp/stompjs/bundles/stomp.umd.min.js', import.meta.url));
const SESSION = 'facewatch.session';
const VIEWPORT = { width: 1280, height: 900 };
const SHOWN_TYPES = ['face.recognized', 'face.unknown']; // what the live page lists by default

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
         '--disable-component-update', '--disable-sync'],
});
const errors = [];

async function signedInPage(session) {
  const context = await browser.newContext({ viewport: VIEWPORT });
  await context.addInitScript(([key, value]) => {
    if (!sessionStorage.getItem(key)) sessionStorage.setItem(key, value);
  }, [SESSION, session]);
  const page = await context.newPage();
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  return page;
}

async function liveReady(page) {
  await page.goto(`${opts.base}/live`);
  await page.waitForFunction(() => performance.getEntriesByName('facewatch:live-ready').length > 0, null,
                             { timeout: 60000 });
  return page.evaluate(() => {
    const paint = Object.fromEntries(performance.getEntriesByType('paint').map((p) => [p.name, p.startTime]));
    const nav = performance.getEntriesByType('navigation')[0];
    const ready = performance.getEntriesByName('facewatch:live-ready')[0];
    return { firstPaint: paint['first-paint'] ?? null, firstContentfulPaint: paint['first-contentful-paint'] ?? null,
             domContentLoaded: nav.domContentLoadedEventEnd, load: nav.loadEventEnd, ready: ready.startTime,
             cameras: ready.detail.cameras, cards: document.querySelectorAll('.cards .card').length };
  });
}

async function barePage(topic, stompPath) {
  const page = await browser.newPage();
  page.on('pageerror', (e) => errors.push(e.message));
  await page.setContent('<!doctype html><title>bare STOMP page</title><body></body>');
  await page.addScriptTag({ path: stompBundle });
  const brokerURL = `${opts.base.replace(/^http/, 'ws')}${stompPath}`;
  await page.evaluate(({ brokerURL, passcode, topic, types }) => new Promise((resolve, reject) => {
    window.delivered = [];
    const client = new StompJs.Client({ brokerURL, connectHeaders: { login: 'bench', passcode, host: '/' },
                                        reconnectDelay: 0, heartbeatIncoming: 0, heartbeatOutgoing: 0 });
    client.onConnect = () => {
      client.watchForReceipt('subscribed', resolve);
      client.subscribe(topic, (m) => {
        const at = performance.timeOrigin + performance.now();
        const e = JSON.parse(m.body);
        if (types.includes(e.type)) window.delivered.push({ id: e.id, time: e.time, at });
      }, { receipt: 'subscribed' });
    };
    client.onStompError = (frame) => reject(new Error(`STOMP ERROR ${frame.headers.message}`));
    client.onWebSocketError = () => reject(new Error('WebSocket error'));
    client.activate();
  }), { brokerURL, passcode: opts.apiKey, topic, types: SHOWN_TYPES });
  return page;
}

let result;
try {
  // Signed in once through the sign-in page: the session the console keeps, reused by every load.
  const first = await browser.newPage();
  await first.goto(`${opts.base}/signin`);
  await first.getByLabel('API key').fill(opts.apiKey);
  await first.getByRole('button', { name: 'Sign in with the key' }).click();
  await first.waitForURL(/\/live/);
  const session = await first.evaluate((key) => sessionStorage.getItem(key), SESSION);
  const stompPath = await first.evaluate(() => document.querySelector('meta[name="facewatch-stomp-path"]').content);
  const topic = JSON.parse(session).me.topics.cameras;
  await first.context().close();

  const loads = [];
  for (let i = 0; i <= opts.loads; i += 1) {
    const page = await signedInPage(session);
    const load = await liveReady(page);
    if (load.cameras !== opts.cameras) throw new Error(`the live page listed ${load.cameras} cameras, not ${opts.cameras}`);
    if (i > 0) loads.push(load); // the first is a warm-up (the browser's own first-run work)
    await page.context().close();
  }

  // The bare page subscribes first: the broker hands each event to its subscribers in turn, and the
  // baseline is not to be the one that waits.
  const bare = await barePage(topic, stompPath);
  const live = await signedInPage(session);
  await liveReady(live);
  const since = Date.now();
  await live.waitForTimeout(opts.seconds * 1000); // the measuring window: the cameras send what they see
  const shown = await live.evaluate(() => performance.getEntriesByName('facewatch:event-shown')
    .map((m) => ({ id: m.detail.id, time: m.detail.time, at: performance.timeOrigin + m.startTime })));
  const delivered = await bare.evaluate(() => window.delivered);
  if (opts.shots) await live.screenshot({ path: join(opts.shots, 'bench-live.png') });
  result = { ok: true, since, loads, shown, delivered, errors };
} catch (err) {
  result = { ok: false, error: String(err && err.stack || err), errors };
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
