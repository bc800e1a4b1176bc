// The REST API (/api/v1) with the signed-in credential in a header, never in a URL. Images that need
// credentials are fetched the same way and shown through blob: URLs.
import { authHeaders, refresh, session } from './session.js';

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.reason || `HTTP ${status}`);
    this.status = status;
    this.code = body?.code || 'HTTP_ERROR';
    this.param = body?.param;
  }
}

function url(path, query) {
  const u = new URL(path.startsWith('/api/') ? path : `/api/v1${path}`, location.origin);
  for (const [k, v] of Object.entries(query || {})) {
    if (v !== undefined && v !== null && v !== '') u.searchParams.set(k, v);
  }
  return u.pathname + u.search;
}

async function send(method, path, { json, form, query } = {}, retried = false) {
  const headers = { ...authHeaders() };
  let body;
  if (json !== undefined) {
    headers['content-type'] = 'application/json';
    body = JSON.stringify(json);
  } else if (form) {
    body = form;
  }
  const resp = await fetch(url(path, query), { method, headers, body });
  if (resp.status === 401 && !retried && session()?.kind === 'token' && await refresh()) {
    return send(method, path, { json, form, query }, true);
  }
  return resp;
}

/** JSON in, JSON out; an ApiError for any status over 299. */
export async function api(method, path, options = {}) {
  const resp = await send(method, path, options);
  const text = await resp.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = { reason: text.slice(0, 200) };
  }
  if (!resp.ok) throw new ApiError(resp.status, data);
  return data;
}

/** A multipart upload with progress (fetch cannot report an upload's progress; XHR can). */
export function upload(path, form, onProgress, retried = false) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', url(path));
    for (const [k, v] of Object.entries(authHeaders())) xhr.setRequestHeader(k, v);
    xhr.upload.onprogress = (e) => e.lengthComputable && onProgress?.(e.loaded / e.total);
    xhr.onerror = () => reject(new ApiError(0, { reason: 'the server could not be reached' }));
    xhr.onload = async () => {
      let data = null;
      try { data = xhr.responseText ? JSON.parse(xhr.responseText) : null; } catch { data = null; }
      if (xhr.status === 401 && !retried && session()?.kind === 'token' && await refresh()) {
        upload(path, form, onProgress, true).then(resolve, reject);
      } else if (xhr.status >= 200 && xhr.status < 300) {
        onProgress?.(1);
        resolve(data);
      } else {
        reject(new ApiError(xhr.status, data));
      }
    };
    xhr.send(form);
  });
}

const blobs = new Map();

/** A blob: URL of an image route (a face's thumbnail, a group face's crop), fetched once with credentials. */
export function imageUrl(path) {
  if (!blobs.has(path)) {
    const made = send('GET', path).then(async (resp) => {
      if (!resp.ok) throw new ApiError(resp.status, await resp.json().catch(() => null));
      return URL.createObjectURL(await resp.blob());
    });
    made.catch(() => blobs.delete(path));
    blobs.set(path, made);
  }
  return blobs.get(path);
}

/** The image bytes of such a route (to send a crop back as feedback, or to search with it). */
export async function imageBlob(path) {
  const resp = await send('GET', path);
  if (!resp.ok) throw new ApiError(resp.status, await resp.json().catch(() => null));
  return resp.blob();
}

/** An <img> whose source is fetched with credentials; alt text required. */
export function authImg(path, alt, className = 'thumb') {
  const img = document.createElement('img');
  img.alt = alt;
  img.className = className;
  img.loading = 'lazy';
  imageUrl(path).then((src) => { img.src = src; }, () => { img.alt = `${alt} (not available)`; });
  return img;
}

export function forgetImages() {
  for (const made of blobs.values()) made.then((u) => URL.revokeObjectURL(u), () => {});
  blobs.clear();
}
