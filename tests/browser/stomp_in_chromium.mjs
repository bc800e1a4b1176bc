// Drives Debian's headless Chromium with playwright-core: a page that uses
// @stomp/stompjs over WebSocket subscribes to a topic and publishes to another.
// Protocol with the Python test on stdout: "READY" once subscribed, then one
// JSON line with what the page received.
import { chromium } from 'playwright-core';
import { fileURLToPath } from 'node:url';

const [wsUrl, login, passcode, topic] = process.argv.slice(2);
const stompBundle = fileURLToPath(new URL('./node_modules/@stomp/stompjs/bundles/stomp.umd.min.js', import.meta.url));

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
         '--disable-component-update', '--disable-sync'],
});
try {
  const page = await browser.newPage();
  await page.setContent('<!doctype html><title>facewatch stomp test</title><body></body>');
  await page.addScriptTag({ path: stompBundle });
  await page.evaluate(({ wsUrl, login, passcode, topic }) => new Promise((resolve, reject) => {
    window.received = [];
    const client = new StompJs.Client({
      brokerURL: wsUrl,
      connectHeaders: { login, passcode, host: '/' },
      reconnectDelay: 0, heartbeatIncoming: 0, heartbeatOutgoing: 0,
    });
    client.onConnect = () => {
      client.watchForReceipt('subscribed', () => {
        client.publish({
          destination: `/topic/${topic}.from-browser`,
          body: JSON.stringify({ hello: 'from chromium' }),
          headers: { 'content-type': 'application/json' },
        });
        resolve();
      });
      client.subscribe(`/topic/${topic}`, (m) => window.received.push({ body: m.body, destination: m.headers.destination }),
                       { receipt: 'subscribed' });
    };
    client.onStompError = (frame) => reject(new Error(`STOMP ERROR ${frame.headers.message}`));
    client.onWebSocketError = () => reject(new Error('WebSocket error'));
    client.activate();
  }), { wsUrl, login, passcode, topic });
  console.log('READY');
  await page.waitForFunction(() => window.received.length > 0, null, { timeout: 15000 });
  console.log(JSON.stringify(await page.evaluate(() => window.received)));
} finally {
  await browser.close();
}
