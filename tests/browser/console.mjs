// Drives the web console in Debian's headless Chromium (playwright-core) against a running `facewatch serve`.
// Usage: node console.mjs <scenario> <json options>; options: base, shots (a folder for screenshots),
// and what the scenario needs (apiKey, clientId, clientSecret, files...). Prints one JSON line:
// {"ok": true, ...what the scenario found, "consoleErrors": [...]} or {"ok": false, "error": "..."}.
import { chromium } from 'playwright-core';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const [scenario, raw] = process.argv.slice(2);
const opts = JSON.parse(raw || '{}');
const TIMEOUT = opts.timeoutMs || 20000;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
         '--disable-component-update', '--disable-sync'],
});
const consoleErrors = [];
const outside = []; // requests to anywhere but the server: the console must make none

async function newPage(viewport = { width: 1280, height: 900 }, mobile = false) {
  const context = await browser.newContext({ viewport, isMobile: mobile, hasTouch: mobile,
                                             deviceScaleFactor: mobile ? 2 : 1 });
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(`${page.url()}: ${m.text()}`); });
  page.on('pageerror', (e) => consoleErrors.push(`${page.url()}: ${e.message}`));
  page.on('request', (r) => {
    const u = r.url();
    if (!u.startsWith(opts.base) && !u.startsWith(opts.base.replace('http', 'ws')) && !u.startsWith('data:')
        && !u.startsWith('blob:')) outside.push(u);
  });
  return page;
}

async function shot(page, name, fullPage = true) {
  if (!opts.shots) return;
  mkdirSync(opts.shots, { recursive: true });
  await page.screenshot({ path: join(opts.shots, `${name}.png`), fullPage });
}

async function signInWithKey(page) {
  await page.goto(`${opts.base}/signin`);
  await page.getByLabel('API key').fill(opts.apiKey);
  await page.getByRole('button', { name: 'Sign in with the key' }).click();
  await page.waitForURL(/\/live/);
}

const scenarios = {
  // Sign in with an API key, see the tenant, sign out (the session is forgotten).
  async 'signin-key'() {
    const page = await newPage();
    await page.goto(opts.base);
    await page.waitForURL(/\/signin/);
    await shot(page, 'signin');
    await page.getByLabel('API key').fill('fwk_not_a_key');
    await page.getByRole('button', { name: 'Sign in with the key' }).click();
    const refused = await page.getByRole('alert').filter({ hasText: 'Not signed in' }).textContent();
    await signInWithKey(page);
    const who = await page.locator('#who').textContent();
    await page.reload();
    const afterReload = page.url();
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.waitForURL(/\/signin/);
    await page.goto(`${opts.base}/faces`);
    await page.waitForURL(/\/signin\?next=/);
    return { refused, who, afterReload, stored: await page.evaluate(() => sessionStorage.length) };
  },

  // Client id and secret: tokens; a token refreshed; nothing of another tenant visible.
  async 'signin-client'() {
    const page = await newPage();
    await page.goto(`${opts.base}/signin`);
    await page.getByLabel('Client id').fill(opts.clientId);
    await page.getByLabel('Client secret').fill(opts.clientSecret);
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    await page.waitForURL(/\/live/);
    const who = await page.locator('#who').textContent();
    const kind = await page.evaluate(() => JSON.parse(sessionStorage.getItem('facewatch.session')).kind);
    // An expired access token is refreshed (the refresh token, once) and the call goes through.
    await page.evaluate(() => {
      const s = JSON.parse(sessionStorage.getItem('facewatch.session'));
      sessionStorage.setItem('facewatch.session', JSON.stringify({ ...s, access: 'fwt.expired' }));
    });
    await page.goto(`${opts.base}/faces`);
    await page.locator('#galleries-h ~ ul button.item').first().waitFor();
    const galleries = await page.locator('#galleries-h ~ ul button.item > span:first-child').allTextContents();
    const refreshed = await page.evaluate(() => JSON.parse(sessionStorage.getItem('facewatch.session')).access !== 'fwt.expired');
    // The STOMP side with the token: the camera list is a request/reply over the WebSocket.
    await page.goto(`${opts.base}/cameras`);
    const cameras = await page.locator('main > p').filter({ hasText: /^No cameras yet\.$|^$/ }).first()
      .waitFor().then(() => page.locator('main').textContent());
    return { who, kind, galleries, refreshed, cameras };
  },

  // A live event arrives (the server watches the shared clip over RTSP).
  async live() {
    const page = await newPage();
    await signInWithKey(page);
    const event = page.locator('li.event[data-type="face.recognized"]').first();
    await event.waitFor({ timeout: opts.eventTimeoutMs || 60000 });
    const text = await event.textContent();
    const eventId = await event.getAttribute('data-event');
    const crop = await event.locator('img').getAttribute('src');
    await page.locator('.cards .card').first().waitFor();
    const card = await page.locator('.cards .card').first().textContent();
    await shot(page, 'live', false);
    // Feedback on the event: "not X" stores the crop as a negative of X.
    await event.getByRole('button', { name: /^Not / }).click();
    await page.getByRole('dialog').getByRole('button', { name: /^Not / }).click();
    const noted = await page.locator('.toast').filter({ hasText: 'Noted' }).textContent();
    return { text, eventId, cropIsJpeg: crop.startsWith('data:image/jpeg;base64,'), card, noted };
  },

  // Register a camera over the UI (a bad id refused first, as the API would), stop it, delete it.
  async cameras() {
    const page = await newPage();
    await signInWithKey(page);
    await page.goto(`${opts.base}/cameras`);
    await page.getByRole('button', { name: 'Register a camera' }).click();
    const dlg = page.getByRole('dialog');
    await dlg.getByLabel('Camera id').fill('Bad Id');
    await dlg.getByLabel('Source URL').fill(opts.cameraUrl);
    await dlg.getByRole('button', { name: 'Register' }).click();
    const idError = await dlg.locator('#' + await dlg.getByLabel('Camera id').getAttribute('id') + '-error').textContent();
    await dlg.getByLabel('Camera id').fill(opts.cameraId);
    await dlg.getByLabel('Analysed frames per second at most').fill('0');
    await dlg.getByRole('button', { name: 'Register' }).click();
    const fpsError = await dlg.getByRole('alert').textContent();
    await dlg.getByLabel('Analysed frames per second at most').fill('2');
    await dlg.getByLabel(opts.gallery, { exact: true }).check();
    await dlg.getByLabel('age').check();
    await shot(page, 'camera-form', false);
    await dlg.getByRole('button', { name: 'Register' }).click();
    await dlg.waitFor({ state: 'detached' });
    const card = page.locator(`section.card[data-camera="${opts.cameraId}"]`);
    await card.waitFor();
    await card.locator('.badge.running').waitFor({ timeout: 30000 });
    const frame = card.locator('img[alt^="recent frame of"]');
    await frame.waitFor({ timeout: 30000 });
    const frameSize = await frame.evaluate(async (img) => { await img.decode(); return [img.naturalWidth, img.naturalHeight]; });
    await shot(page, 'cameras');
    await card.getByRole('button', { name: 'Stop' }).click();
    await card.getByRole('button', { name: 'Start' }).waitFor();
    await card.locator('.badge.stopped').waitFor({ timeout: 30000 });
    const stopped = await card.textContent();
    await card.getByRole('button', { name: 'Delete' }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Delete' }).click();
    await card.waitFor({ state: 'detached' });
    return { idError, fpsError, stopped, frameSize };
  },

  // A camera's settings changed through its Edit form.
  async 'camera-edit'() {
    const page = await newPage();
    await signInWithKey(page);
    await page.goto(`${opts.base}/cameras`);
    const card = page.locator(`section.card[data-camera="${opts.cameraId}"]`);
    await card.getByRole('button', { name: 'Edit' }).click();
    const dlg = page.getByRole('dialog', { name: `Edit camera ${opts.cameraId}` });
    const idDisabled = await dlg.getByLabel('Camera id').isDisabled();
    await dlg.getByLabel('Name', { exact: true }).fill(opts.name);
    await dlg.getByLabel('Analysed frames per second at most').fill('1.5');
    await dlg.getByLabel(opts.gallery, { exact: true }).check();
    await dlg.getByLabel('Threshold').selectOption('strict');
    await dlg.getByLabel('Cool-down per subject (s)').fill('12');
    await dlg.getByLabel('age').check();
    await shot(page, 'camera-edit', false);
    await dlg.getByRole('button', { name: 'Save' }).click();
    await dlg.waitFor({ state: 'detached' });
    await card.locator('h3').filter({ hasText: opts.name }).waitFor();
    return { idDisabled, heading: await card.locator('h3').textContent(),
             line: await card.locator('p.small.muted').first().textContent() };
  },

  // A gallery and a subject made, several photos uploaded at once, their thumbnails shown.
  async faces() {
    const page = await newPage();
    await signInWithKey(page);
    await page.goto(`${opts.base}/faces`);
    await page.getByLabel('New gallery name').fill(opts.gallery);
    await page.getByRole('button', { name: 'Add' }).first().click();
    await page.getByRole('button', { name: new RegExp(`^${opts.gallery}`) }).waitFor();
    await page.getByLabel('New subject name').fill(opts.subject);
    await page.locator('form:has([name="subject"]) button').click();
    await page.locator('#detail-h ~ h3').filter({ hasText: opts.subject }).waitFor();
    await page.locator('#face-files').setInputFiles(opts.files);
    const thumbs = page.locator('figure.face img[src^="blob:"]');
    await page.waitForFunction((n) => document.querySelectorAll('figure.face img[src^="blob:"]').length >= n,
                               opts.files.length);
    const loaded = await thumbs.evaluateAll((imgs) => imgs.map((i) => i.complete && i.naturalWidth > 0));
    const progress = await page.locator('.upload-list progress').evaluateAll((bars) => bars.map((b) => b.value));
    await shot(page, 'faces');
    return { thumbnails: loaded.length, loaded, progress };
  },

  // A subject renamed (opts.to a new name) or merged (opts.to another subject's name) through its form.
  async 'subject-rename'() {
    const page = await newPage();
    await signInWithKey(page);
    await page.goto(`${opts.base}/faces?gallery=${encodeURIComponent(opts.gallery)}&subject=${encodeURIComponent(opts.subject)}`);
    await page.locator('#detail-h ~ h3').waitFor();
    const before = await page.locator('#detail-h ~ h3').textContent();
    await page.getByRole('button', { name: 'Rename or merge' }).click();
    const dlg = page.getByRole('dialog');
    await dlg.getByLabel('Name', { exact: true }).fill(opts.to);
    await dlg.getByRole('button', { name: 'Rename' }).click();
    await dlg.waitFor({ state: 'detached' });
    const heading = page.locator('#detail-h ~ h3').filter({ hasText: opts.to });
    await heading.waitFor();
    const merged = opts.merge ? await page.locator('.toast').filter({ hasText: 'Merged into' }).textContent() : null;
    await page.locator('figure.face img[src^="blob:"]').first().waitFor();
    await shot(page, opts.merge ? 'faces-merged' : 'faces-renamed');
    return { before, after: await heading.textContent(), merged, url: page.url(),
             faces: await page.locator('figure.face').count() };
  },

  // Bulk enrolment from a zip, its progress live from the job's topic.
  async 'enrol-zip'() {
    const page = await newPage();
    await signInWithKey(page);
    await page.goto(`${opts.base}/faces?gallery=${encodeURIComponent(opts.gallery)}`);
    await page.getByText('Bulk enrolment from a zip').click();
    await page.locator('#enrol-zip').setInputFiles(opts.zip);
    await page.getByRole('button', { name: 'Enrol the zip' }).click();
    const line = page.locator('details p[aria-live]');
    await line.filter({ hasText: /: done,/ }).waitFor({ timeout: 60000 });
    const bar = await page.locator('details progress').evaluate((b) => [b.value, b.max]);
    await shot(page, 'enrol-zip', false);
    return { line: await line.textContent(), bar };
  },

  // History against the sightings API's shape (routes stubbed in the browser: a server with that API
  // answers them); sightings by camera, then a search by a face taken from the test page.
  async history() {
    const page = await newPage();
    await signInWithKey(page);
    const jpeg = readFileSync(opts.crop);
    const sighting = (id, name, seenAt) => ({
      id, seq: seenAt, event_id: `e${id}`, camera: 'stage', track: 1, first_seen: seenAt, last_seen: seenAt,
      seen_at: seenAt, decision: name ? 'recognized' : 'unknown', subject: name ? { id: 'lin', name, gallery: 'hamilton' } : null,
      group: name ? null : 'g1', similarity: name ? 0.61 : 0.12, runner_up: null, threshold: 0.34, margin: 0.2,
      reason: 'matched', quality: 0.9, model_id: 'm', crop: `/api/v1/sightings/${id}/crop`, embedding: true });
    const asked = [];
    await page.route('**/api/v1/openapi.json', async (route) => {
      const doc = await (await route.fetch()).json();
      doc.paths['/api/v1/sightings'] = { get: {} };
      doc.paths['/api/v1/sightings/search'] = { post: {} };
      await route.fulfill({ json: doc });
    });
    await page.route('**/api/v1/sightings**', async (route) => {
      const url = new URL(route.request().url());
      asked.push(`${route.request().method()} ${url.pathname}${url.search}`);
      if (url.pathname.endsWith('/crop')) return route.fulfill({ body: jpeg, contentType: 'image/jpeg' });
      if (url.pathname.endsWith('/search')) {
        return route.fulfill({ json: { sightings: [{ ...sighting('s3', 'Lin-Manuel Miranda', 1795920100), match_similarity: 0.7 }],
                                       threshold: 0.33 } });
      }
      return route.fulfill({ json: { sightings: [sighting('s1', 'Lin-Manuel Miranda', 1795920000), sighting('s2', null, 1795919000)],
                                     before: null } });
    });
    await page.goto(`${opts.base}/history`);
    await page.locator('#sightings article').first().waitFor();
    await page.getByLabel('Camera').fill('stage');
    await page.getByRole('button', { name: 'Show' }).click();
    await page.waitForFunction(() => document.querySelectorAll('#sightings img[src^="blob:"]').length === 2);
    const listed = await page.locator('#sightings h3').allTextContents();
    await shot(page, 'history');
    await page.goto(`${opts.base}/test`);
    await page.locator('#test-file').setInputFiles(opts.photo);
    await page.getByRole('button', { name: 'Run' }).click();
    await page.getByRole('button', { name: 'Search history for this face' }).first().click();
    await page.waitForURL(/\/history\?search=face/);
    await page.getByText(/sightings of this face/).waitFor();
    const searched = await page.locator('#sightings h3').allTextContents();
    return { listed, searched, asked };
  },

  // The test page draws the faces it found on the photo.
  async test() {
    const page = await newPage();
    await signInWithKey(page);
    await page.goto(`${opts.base}/test`);
    await page.locator('#test-file').setInputFiles(opts.photo);
    await page.getByText('Ready: choose what to do and run.').waitFor();
    const blank = await canvasSignature(page);
    await page.getByRole('button', { name: 'Run' }).click();
    const found = await page.getByText(/faces? found/).textContent();
    const drawn = await canvasSignature(page);
    await shot(page, 'test-detect');
    await page.getByLabel('Identify: who, from the galleries').check();
    await page.getByLabel('Threshold').selectOption('low');
    await page.getByRole('button', { name: 'Run' }).click();
    await page.locator('section.card h3').first().waitFor();
    await page.waitForFunction(() => document.querySelector('section.card h3') && !document.body.textContent.includes('Working…'));
    const identified = await page.locator('section.card h3').allTextContents();
    await shot(page, 'test-identify');
    return { found, boxesDrawn: drawn !== blank, identified };
  },

  // The test page's verify mode: against a second photo, then against an enrolled subject.
  async verify() {
    const page = await newPage();
    await signInWithKey(page);
    await page.goto(`${opts.base}/test`);
    await page.locator('#test-file').setInputFiles(opts.photo);
    await page.getByText('Ready: choose what to do and run.').waitFor();
    await page.getByLabel('Verify: the same person as…').check();
    await page.getByLabel('A second photo').setInputFiles(opts.second);
    await page.getByRole('button', { name: 'Run' }).click();
    const verdict = page.locator('section[aria-label="Result"] p.badge');
    const photos = await verdict.textContent();
    await shot(page, 'test-verify');
    await page.getByLabel('A second photo').setInputFiles([]);
    await page.getByLabel('…or gallery').fill(opts.gallery);
    await page.getByLabel('and subject id').fill(opts.subject);
    await page.getByRole('button', { name: 'Run' }).click();
    const subject = await verdict.textContent();
    return { photos, subject, drawn: await page.locator('section.card h3').allTextContents() };
  },

  // Unknown people: a group promoted to a subject.
  async unknown() {
    const page = await newPage();
    await signInWithKey(page);
    await page.goto(`${opts.base}/unknown`);
    const first = page.locator(`li[data-group="${opts.group}"] button.item`);
    await first.click();
    await page.locator('figure.face img[src^="blob:"]').first().waitFor();
    await shot(page, 'unknown');
    // "This is…" on a face of the group: its crop enrolled as a face of a new subject.
    await page.locator('figure.face').first().getByRole('button', { name: 'This is…' }).click();
    const who = page.getByRole('dialog');
    await who.getByLabel('Gallery').selectOption(opts.gallery);
    await who.getByLabel('…or a new subject named').fill(opts.thisIs);
    await who.getByRole('button', { name: 'Add the face' }).click();
    await who.waitFor({ state: 'detached' });
    const added = await page.locator('.toast').filter({ hasText: 'Added as a face of' }).textContent();
    await page.getByRole('button', { name: 'Promote to a subject' }).click();
    const dlg = page.getByRole('dialog');
    await dlg.getByLabel('Gallery').selectOption(opts.gallery);
    await dlg.getByLabel('Name of the new subject').fill(opts.name);
    await dlg.getByRole('button', { name: 'Promote' }).click();
    await dlg.waitFor({ state: 'detached' });
    // The toast says so at once; the group's line once the page has read the group again.
    const promoted = await page.locator('#group-h ~ p').filter({ hasText: /^promoted / }).textContent();
    return { promoted, added };
  },

  // Unknown people: two groups merged, a face moved to a third, that one ignored.
  async groups() {
    const page = await newPage();
    await signInWithKey(page);
    const detail = page.locator('#group-h ~ p').first();
    await page.goto(`${opts.base}/unknown?group=${opts.into}`);
    await detail.filter({ hasText: ' 1 faces' }).waitFor();
    await page.locator(`li[data-group="${opts.other}"] input[type="checkbox"]`).check();
    await page.getByRole('button', { name: 'Merge ticked groups into this one' }).click();
    const merged = await page.locator('.toast').filter({ hasText: 'merged' }).textContent();
    await detail.filter({ hasText: ' 2 faces' }).waitFor();
    await page.locator(`li[data-group="${opts.other}"]`).waitFor({ state: 'detached' });
    await page.locator(`figure.face[data-face="${opts.face}"] img[src^="blob:"]`).waitFor();
    await shot(page, 'unknown-merged');
    // Move the merged-in face on to a third group.
    await page.locator(`figure.face[data-face="${opts.face}"] input.pick`).check();
    await page.getByRole('button', { name: 'Move ticked faces…' }).click();
    const dlg = page.getByRole('dialog', { name: 'Move 1 face' });
    await dlg.getByLabel('Move them to').selectOption(opts.target);
    await dlg.getByRole('button', { name: 'Move' }).click();
    await dlg.waitFor({ state: 'detached' });
    await detail.filter({ hasText: ' 1 faces' }).waitFor();
    await page.locator(`figure.face[data-face="${opts.face}"]`).waitFor({ state: 'detached' });
    // The third group chosen in the list, then ignored.
    await page.locator(`li[data-group="${opts.target}"] button.item`).click();
    await detail.filter({ hasText: ' 2 faces' }).waitFor();
    await page.getByRole('button', { name: 'Ignore', exact: true }).click();
    await page.getByRole('button', { name: 'Stop ignoring' }).waitFor();
    const ignored = await detail.textContent();
    await page.locator(`li[data-group="${opts.target}"]`).waitFor({ state: 'detached' }); // the list shows active ones
    return { merged, ignored };
  },

  // The API reference renders the OpenAPI document; the STOMP page lists the tenant's topics.
  async reference() {
    const page = await newPage();
    await signInWithKey(page);
    await page.goto(`${opts.base}/reference`);
    await page.locator('.opblock').first().waitFor();
    const operations = await page.locator('.opblock').count();
    const title = await page.locator('.swagger .title').first().textContent();
    await shot(page, 'reference', false);
    await page.goto(`${opts.base}/reference/stomp`);
    await page.locator('table code').first().waitFor();
    const topics = await page.locator('table code').allTextContents();
    return { operations, title, topics };
  },

  // Every page, signed in: no console errors, nothing fetched elsewhere; keyboard focus visible; a phone.
  async pages() {
    const page = await newPage();
    await signInWithKey(page);
    const seen = {};
    for (const path of ['/live', '/cameras', '/faces', '/test', '/unknown', '/history', '/reference', '/reference/stomp']) {
      await page.goto(opts.base + path);
      await page.locator('main h1').first().waitFor();
      await page.waitForLoadState('networkidle');
      seen[path] = await page.locator('main h1').first().textContent();
      await shot(page, `page${path.replaceAll('/', '-')}`, false);
    }
    await page.goto(`${opts.base}/history`);
    await page.locator('main .notice, main #sightings, main .error').first().waitFor();
    const history = await page.locator('main').textContent();
    // Keyboard: the skip link first, then the menu; focus is drawn.
    await page.goto(`${opts.base}/faces`);
    await page.locator('main h1').waitFor();
    await page.keyboard.press('Tab');
    const firstFocus = await page.evaluate(() => document.activeElement.textContent.trim());
    await page.keyboard.press('Tab');
    await page.keyboard.press('Tab');
    const outline = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
    await page.keyboard.press('Enter');
    await page.waitForURL(/\/live/);
    const phone = await newPage({ width: 390, height: 844 }, true);
    await signInWithKey(phone);
    await phone.goto(`${opts.base}/faces`);
    await phone.locator('main h1').waitFor();
    await phone.waitForLoadState('networkidle');
    const overflow = await phone.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    await shot(phone, 'phone-faces');
    await phone.getByRole('button', { name: 'Menu' }).click();
    await phone.getByRole('link', { name: 'Unknown people' }).click();
    await phone.waitForURL(/\/unknown/);
    await phone.locator('main h1').waitFor();
    await shot(phone, 'phone-unknown', false);
    return { seen, history, firstFocus, outline, overflow, outside };
  },
};

async function canvasSignature(page) {
  return page.locator('canvas').evaluate((c) => {
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let sum = 0;
    for (let i = 0; i < d.length; i += 97) sum = (sum * 31 + d[i]) % 1000000007;
    return `${c.width}x${c.height}:${sum}`;
  });
}

let result;
try {
  result = { ok: true, ...(await scenarios[scenario]()), consoleErrors, outside };
} catch (err) {
  result = { ok: false, error: String(err && err.stack || err), consoleErrors, outside };
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
