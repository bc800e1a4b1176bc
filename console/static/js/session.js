// Who is signed in: an API key, or a client's access and refresh tokens (refreshed before they expire).
// Kept in sessionStorage (this tab only, gone when it closes); sign-out forgets it.

const KEY = 'facewatch.session';
const listeners = new Set();
let current = load();
let refreshing = null;
let refreshTimer = null;

function load() {
  try {
    return JSON.parse(sessionStorage.getItem(KEY)) || null;
  } catch {
    return null;
  }
}

function save(value) {
  current = value;
  if (value) sessionStorage.setItem(KEY, JSON.stringify(value));
  else sessionStorage.removeItem(KEY);
  schedule();
  for (const fn of listeners) fn(current);
}

export const session = () => current;
export const onSessionChange = (fn) => listeners.add(fn);

/** The headers that carry the credential, for REST and for STOMP SENDs. */
export function authHeaders() {
  if (!current) return {};
  if (current.kind === 'key') return { 'x-api-key': current.apiKey };
  return { authorization: `Bearer ${current.access}` };
}

/** STOMP CONNECT headers: the key as passcode, or the token as authorization. */
export function connectHeaders() {
  if (!current) return {};
  if (current.kind === 'key') return { login: 'console', passcode: current.apiKey };
  return { authorization: `Bearer ${current.access}` };
}

async function post(path, body) {
  const resp = await fetch(path, { method: 'POST', headers: { 'content-type': 'application/json' },
                                   body: JSON.stringify(body) });
  const data = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new Error(data.reason || `${resp.status} ${resp.statusText}`);
  return data;
}

async function whoAmI(headers) {
  const resp = await fetch('/api/v1/me', { headers });
  const data = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new Error(resp.status === 401 ? 'that credential was refused' : (data.reason || resp.statusText));
  return data;
}

function tokens(data) {
  return { access: data.access_token, refresh: data.refresh_token,
           expiresAt: Date.now() + (data.expires_in || 3600) * 1000 };
}

export async function signInWithKey(apiKey) {
  const me = await whoAmI({ 'x-api-key': apiKey });
  save({ kind: 'key', apiKey, me });
}

export async function signInWithClient(clientId, clientSecret) {
  const data = await post('/api/v1/login', { client_id: clientId, client_secret: clientSecret });
  const me = await whoAmI({ authorization: `Bearer ${data.access_token}` });
  save({ kind: 'token', clientId, ...tokens(data), me });
}

/** New tokens from the refresh token (one use); one refresh at a time. False when it failed. */
export function refresh() {
  if (!current || current.kind !== 'token') return Promise.resolve(false);
  refreshing ||= post('/api/v1/token/refresh', { refresh_token: current.refresh })
    .then((data) => { save({ ...current, ...tokens(data) }); return true; })
    .catch(() => { save(null); return false; })
    .finally(() => { refreshing = null; });
  return refreshing;
}

function schedule() {
  clearTimeout(refreshTimer);
  if (current?.kind === 'token') {
    const inMs = Math.max(5000, current.expiresAt - Date.now() - 60000);
    refreshTimer = setTimeout(refresh, inMs);
  }
}

export function signOut() {
  save(null);
}

schedule();
