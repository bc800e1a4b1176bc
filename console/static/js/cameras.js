// Cameras over the STOMP API (the REST API does not serve them), their status at a glance, and the
// latest face each one sent (kept while the console is open).
import { request } from './bus.js';
import { h } from './dom.js';
import { session } from './session.js';

const rates = new Map(); // camera id -> {analysed, time, fps}
export const latestFaces = new Map(); // camera id -> {crop (base64), time, label}

export const cameraPath = (id) => `/api/v1/cameras${id ? `/${encodeURIComponent(id)}` : ''}`;

export async function listCameras() {
  const { cameras } = await request('GET', cameraPath());
  for (const cam of cameras) noteRate(cam.id, cam.status?.stats);
  return cameras;
}

function noteRate(id, stats) {
  if (!stats || typeof stats.analysed !== 'number' || typeof stats.time !== 'number') return;
  const prev = rates.get(id);
  let fps = prev?.fps ?? null;
  if (prev && stats.time > prev.time) fps = (stats.analysed - prev.analysed) / (stats.time - prev.time);
  if (prev && stats.analysed < prev.analysed) fps = null; // the worker restarted
  rates.set(id, { analysed: stats.analysed, time: stats.time, fps });
}

/** The tenant's topic of one camera's events, or of all of them (id null). */
export function cameraTopic(id) {
  const me = session()?.me;
  if (!me) return null;
  return id ? me.topics.camera.replace('<camera id>', id) : me.topics.cameras;
}

export function noteFace(event) {
  if (event?.crop && event.camera) {
    latestFaces.set(event.camera, { crop: event.crop, time: event.time, label: event.subject?.name || 'unknown person' });
  }
}

/** State, analysed fps, dropped frames and the last error of a camera (from GET /cameras or a status event). */
export function statusLines(cam) {
  const st = cam.status || {};
  const stats = st.stats || {};
  const fps = rates.get(cam.id)?.fps;
  const error = st.reason || st.worker?.last_exit || null;
  // A stopped camera's reason says how it stopped (a file at its end, a move to another node): no error.
  const stopped = st.state === 'stopped' && st.reason;
  return h('dl.stats', {},
    h('dt', {}, 'state'), h('dd', {}, stateBadge(st.state || (cam.enabled ? 'unknown' : 'stopped'))),
    h('dt', {}, 'analysed'), h('dd', {}, fps === null || fps === undefined ? `${stats.analysed ?? '—'} frames`
                                                 : `${fps.toFixed(1)} fps (${stats.analysed} frames)`),
    h('dt', {}, 'dropped'), h('dd', {}, `${stats.dropped ?? '—'} frames`),
    h('dt', {}, 'faces'), h('dd', {}, `${stats.faces ?? '—'} seen, ${stats.recognized ?? 0} named, ${stats.unknown ?? 0} unknown`),
    stopped ? [h('dt', {}, 'stopped because'), h('dd.muted', {}, st.reason)]
      : [h('dt', {}, 'last error'), h('dd', { class: error ? 'error' : 'muted' }, error || 'none')]);
}

export function stateBadge(state) {
  return h(`span.badge.${String(state).replace(/[^a-z-]/g, '')}`, {}, state);
}
