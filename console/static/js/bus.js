// STOMP over WebSocket (@stomp/stompjs, vendored): the tenant's topics, and the API's request/reply queue
// (/queue/facewatch.api), which is the only way cameras are managed.
import { connectHeaders, authHeaders, session } from './session.js';

const API_QUEUE = '/queue/facewatch.api';
const REPLY_TO = '/temp-queue/console';
const REQUEST_TIMEOUT_MS = 20000;

let client = null;
let connected = false;
const wanted = new Map(); // key -> {destination, callback, sub}
const pending = new Map(); // correlation id -> {resolve, reject, timer}
const stateListeners = new Set();
let nextKey = 0;

export class BusError extends Error {
  constructor(status, body) {
    super(body?.reason || `STOMP API answered ${status}`);
    this.status = status;
    this.code = body?.code || 'HTTP_ERROR';
    this.param = body?.param;
  }
}

export function stompPath() {
  return document.querySelector('meta[name="facewatch-stomp-path"]')?.content || '';
}

export const busAvailable = () => Boolean(stompPath()) && typeof window.StompJs !== 'undefined';
export const isConnected = () => connected;
export const onBusState = (fn) => { stateListeners.add(fn); fn(connected); return () => stateListeners.delete(fn); };

function setConnected(value) {
  connected = value;
  for (const fn of stateListeners) fn(value);
}

function brokerUrl() {
  return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}${stompPath()}`;
}

function ensureClient() {
  if (client || !session()) return client;
  if (!busAvailable()) throw new Error(stompPath() ? 'the STOMP client (vendor/stomp.umd.min.js) is missing: '
    + 'run scripts/setup.sh' : 'this server has no STOMP WebSocket (an external broker): live pages are off');
  client = new window.StompJs.Client({
    brokerURL: brokerUrl(),
    reconnectDelay: 3000,
    heartbeatIncoming: 20000,
    heartbeatOutgoing: 20000,
    // A refreshed token is used at every (re)connect.
    beforeConnect: () => { client.connectHeaders = { host: '/', ...connectHeaders() }; },
  });
  client.onConnect = () => {
    setConnected(true);
    for (const entry of wanted.values()) entry.sub = client.subscribe(entry.destination, entry.callback);
  };
  client.onWebSocketClose = () => setConnected(false);
  client.onStompError = (frame) => console.warn('STOMP error:', frame.headers.message);
  // Replies to our /temp-queue/ arrive as messages of no subscription of ours.
  client.onUnhandledMessage = (message) => {
    const id = message.headers['correlation-id'];
    const waiting = pending.get(id);
    if (!waiting) return;
    pending.delete(id);
    clearTimeout(waiting.timer);
    let body = null;
    try { body = message.body ? JSON.parse(message.body) : null; } catch { body = { reason: message.body }; }
    const status = Number(message.headers.status || 0);
    if (status >= 200 && status < 300) waiting.resolve(body);
    else waiting.reject(new BusError(status, body));
  };
  client.activate();
  return client;
}

/** Subscribes while the returned function is not called; kept across reconnects. */
export function subscribe(destination, onMessage) {
  const key = ++nextKey;
  const callback = (message) => {
    let body = message.body;
    try { body = JSON.parse(message.body); } catch { /* not JSON: passed as text */ }
    onMessage(body, message);
  };
  const entry = { destination, callback, sub: null };
  wanted.set(key, entry);
  const c = ensureClient();
  if (c && connected) entry.sub = c.subscribe(destination, callback);
  return () => {
    wanted.delete(key);
    if (entry.sub && connected) {
      try { entry.sub.unsubscribe(); } catch { /* connection gone */ }
    }
  };
}

function whenConnected(timeoutMs) {
  if (connected) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { off(); reject(new Error('the live connection (STOMP) is not up')); }, timeoutMs);
    const off = onBusState((up) => { if (up) { clearTimeout(timer); setTimeout(off); resolve(); } });
  });
}

/** One API call over STOMP: {method, path, body} -> the reply's JSON (BusError for a status over 299). */
export async function request(method, path, body) {
  ensureClient();
  await whenConnected(10000);
  const id = crypto.randomUUID();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { pending.delete(id); reject(new Error(`no answer to ${method} ${path}`)); },
                             REQUEST_TIMEOUT_MS);
    pending.set(id, { resolve, reject, timer });
    client.publish({
      destination: API_QUEUE,
      body: body === undefined ? '' : JSON.stringify(body),
      headers: { method, path, 'reply-to': REPLY_TO, 'correlation-id': id, 'content-type': 'application/json',
                 ...authHeaders() },
    });
  });
}

/** Closes the connection (sign-out); the next subscribe or request opens a new one. */
export async function disconnect() {
  wanted.clear();
  for (const [id, waiting] of pending) {
    clearTimeout(waiting.timer);
    waiting.reject(new Error('signed out'));
    pending.delete(id);
  }
  const c = client;
  client = null;
  setConnected(false);
  if (c) await c.deactivate();
}
