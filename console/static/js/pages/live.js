// Live: the tenant's camera events as they happen (STOMP over WebSocket), and each camera's status.
import { cameraTopic, listCameras, noteFace, statusLines } from '../cameras.js';
import { subscribe } from '../bus.js';
import { clear, field, fmtNum, h, status } from '../dom.js';
import { faceActions } from '../feedback.js';

const MAX_EVENTS = 200;
const REFRESH_MS = 5000;
const events = []; // kept across page changes while the console is open
// User Timing marks (DevTools' Performance panel; bench/console.py reads them): the page ready with its
// cameras and live subscription, and each event as it enters the DOM ({id, time} of the event).
export const READY_MARK = 'facewatch:live-ready';
export const SHOWN_MARK = 'facewatch:event-shown';

export async function render(main, { navigate, params }) {
  let only = params.get('camera') || '';
  let cameras = [];
  const [filterField, filter] = field('Cameras', h('select', { name: 'camera' }, h('option', { value: '' }, 'All cameras')));
  const showEnded = h('input', { type: 'checkbox', name: 'ended' });
  const cards = h('div.cards', { 'aria-label': 'Camera status' });
  const feed = h('ol.feed', { 'aria-label': 'Events, newest first', 'aria-live': 'polite' });
  const note = status('Connecting to the live events…');
  main.append(h('h1', {}, 'Live'),
    h('div.row', {}, filterField, h('label.inline', {}, showEnded, 'show track summaries')),
    h('h2', {}, 'Cameras'), cards, h('h2', {}, 'Events'), note, feed);

  const drawCards = () => {
    const shown = cameras.filter((c) => !only || c.id === only);
    clear(cards, shown.length ? shown.map((cam) => h('section.card', { 'aria-label': `camera ${cam.id}` },
      h('h3', {}, cam.name ? `${cam.name} (${cam.id})` : cam.id), statusLines(cam)))
      : h('p.muted', {}, 'No cameras yet: register one on the ', h('a', { href: '/cameras', 'data-link': true }, 'Cameras'), ' page.'));
  };
  const isShown = (e) => (!only || e.camera === only) && (showEnded.checked || e.type !== 'track.ended');
  const drawFeed = () => {
    const shown = events.filter(isShown);
    clear(feed, shown.map((e) => eventItem(e, navigate)));
    note.textContent = shown.length ? '' : 'No events yet. They appear here as cameras see faces.';
  };

  const refresh = async () => {
    try {
      const before = cameras.map((c) => c.id).join();
      cameras = await listCameras();
      if (cameras.map((c) => c.id).join() !== before) { // the list is left alone (and focus with it) otherwise
        filter.replaceChildren(h('option', { value: '' }, 'All cameras'),
                               ...cameras.map((c) => h('option', { value: c.id }, c.name || c.id)));
        filter.value = only;
      }
      drawCards();
    } catch (err) {
      clear(cards, status(`Cameras could not be read: ${err.message}`, 'error'));
    }
  };

  let unsubscribe = () => {};
  const listen = () => {
    unsubscribe();
    unsubscribe = subscribe(cameraTopic(only || null), (event) => {
      if (!event || typeof event !== 'object') return;
      if (event.type === 'camera.status') {
        const cam = cameras.find((c) => c.id === event.camera);
        if (cam) {
          cam.status = { ...(cam.status || {}), state: event.state, reason: event.reason ?? null };
          drawCards();
        }
        return;
      }
      noteFace(event);
      // One row added (and the oldest dropped), not the list redrawn: the feed is what the filter shows.
      events.unshift(event);
      const dropped = events.length > MAX_EVENTS ? events.pop() : null;
      if (dropped && isShown(dropped)) feed.lastElementChild?.remove();
      if (isShown(event)) {
        feed.prepend(eventItem(event, navigate));
        note.textContent = '';
        performance.mark(SHOWN_MARK, { detail: { id: event.id, time: event.time } });
      }
    });
  };
  filter.addEventListener('change', () => {
    only = filter.value;
    history.replaceState(null, '', only ? `/live?camera=${encodeURIComponent(only)}` : '/live');
    listen();
    drawCards();
    drawFeed();
  });
  showEnded.addEventListener('change', drawFeed);

  try {
    listen();
  } catch (err) {
    note.textContent = err.message;
    note.className = 'error';
    return undefined;
  }
  drawFeed();
  await refresh();
  performance.mark(READY_MARK, { detail: { cameras: cameras.length } });
  const timer = setInterval(refresh, REFRESH_MS);
  return () => { clearInterval(timer); unsubscribe(); };
}

function eventItem(e, navigate) {
  const recognized = e.type === 'face.recognized';
  const name = recognized ? (e.subject?.name || e.subject?.id) : e.type === 'face.unknown' ? 'Unknown person'
    : e.subject ? `${e.subject.name || e.subject.id} (track ended)` : 'Track ended';
  const img = e.crop ? h('img', { src: `data:image/jpeg;base64,${e.crop}`, alt: `face seen by ${e.camera}` })
    : h('div.noimg', { 'aria-hidden': 'true' });
  const runner = e.runner_up ? `runner-up ${e.runner_up.subject?.name || e.runner_up.subject?.id || '—'} `
    + `${fmtNum(e.runner_up.similarity)}` : 'no runner-up';
  const similarity = recognized ? `similarity ${fmtNum(e.similarity)} (threshold ${fmtNum(e.threshold)})`
    : typeof e.best_similarity === 'number' ? `best similarity ${fmtNum(e.best_similarity)}` : '';
  const badgeClass = recognized ? 'recognized' : e.type === 'face.unknown' ? 'unknown-face' : '';
  return h('li.event', { dataset: { type: e.type, camera: e.camera, event: e.id } }, img,
    h('div', {},
      h('div.who-line', {}, name, ' ', h(`span.badge${badgeClass ? '.' + badgeClass : ''}`, {}, e.type)),
      h('div.meta', {}, [e.camera, new Date((e.time || Date.now() / 1000) * 1000).toLocaleTimeString(),
                         similarity, recognized ? runner : null].filter(Boolean).join(' · ')),
      e.type === 'track.ended' ? null
        : faceActions(navigate, { subject: recognized ? e.subject : null, cropBase64: e.crop, source: e.id })));
}
