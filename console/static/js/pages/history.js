// History: sightings by camera, person and time (GET /api/v1/sightings), and search by face
// (POST /api/v1/sightings/search) from a photo or from any face on screen. A server without the
// sightings API says so (its OpenAPI document lacks the route).
import { api, authImg, imageBlob } from '../api.js';
import { base64ToBlob, clear, field, fmtNum, fmtTime, h, status, toBase64, toast } from '../dom.js';
import { faceActions } from '../feedback.js';

const PAGE = 50;

export async function render(main, { navigate, params }) {
  main.append(h('h1', {}, 'History'));
  const probe = h('p.muted', {}, 'Checking whether this server keeps sightings…');
  main.append(probe);
  // The server's OpenAPI document says which routes it has (asking the route itself would log a 404).
  let paths;
  try {
    ({ paths } = await api('GET', '/openapi.json'));
  } catch (err) {
    probe.replaceWith(status(`History could not be read: ${err.message}`, 'error'));
    return undefined;
  }
  probe.remove();
  if (!paths['/api/v1/sightings']) {
    main.append(h('div.notice', { role: 'note' }, h('h2', {}, 'Not available on this server'),
      h('p', {}, 'This server has no sightings API (GET /api/v1/sightings), so there is no history to browse or '
        + 'search. Live events still appear on the ', h('a', { href: '/live', 'data-link': true }, 'Live'), ' page.')));
    return undefined;
  }
  const canSearch = Boolean(paths['/api/v1/sightings/search']);

  const input = (name, attrs = {}) => h('input', { name, ...attrs });
  const [camF, camera] = field('Camera', input('camera', { placeholder: 'any' }));
  const [galF, gallery] = field('Gallery', input('gallery'));
  const [subF, subject] = field('Subject id', input('subject'));
  const [grpF, group] = field('Unknown group', input('group'));
  const [decF, decision] = field('Decision', h('select', { name: 'decision' },
    [['', 'any'], ['recognized', 'recognized'], ['unknown', 'unknown']].map(([v, t]) => h('option', { value: v }, t))));
  const [fromF, from] = field('From', input('from', { type: 'datetime-local' }));
  const [toF, to] = field('To', input('to', { type: 'datetime-local' }));
  const filters = h('form.panel', {}, h('h2', {}, 'Sightings'), h('div.row', {}, camF, galF, subF, grpF, decF, fromF, toF),
    h('div.actions', {}, h('button.primary', { type: 'submit' }, 'Show')));
  const file = h('input', { type: 'file', accept: 'image/*', id: 'search-file' });
  const searchForm = h('form.panel', {}, h('h2', {}, 'Search by face'),
    h('label', { for: 'search-file' }, 'A photo of the person'), file,
    h('p.hint', {}, 'Or use "Search history" on any face in the console (live events, faces, groups, the test page).'),
    h('div.actions', {}, h('button.primary', { type: 'submit' }, 'Search')));
  const results = h('section', { 'aria-live': 'polite', 'aria-label': 'Results' });
  main.append(h('div.cols.side', {}, filters, canSearch ? searchForm : h('p.panel.muted', {}, 'Search by face is not available on this server.')), results);

  const epoch = (el) => (el.value ? String(new Date(el.value).getTime() / 1000) : '');
  let before = null;
  const list = async (more = false) => {
    if (!more) before = null;
    const query = { camera: camera.value.trim(), gallery: gallery.value.trim(), subject: subject.value.trim(),
                    group: group.value.trim(), decision: decision.value, from: epoch(from), to: epoch(to), limit: PAGE,
                    before: more ? before : '' };
    try {
      const res = await api('GET', '/sightings', { query });
      before = res.before ?? null;
      show(res.sightings, more, before ? () => list(true) : null);
    } catch (err) {
      clear(results, status(err.message, 'error'));
    }
  };
  const search = async (blob) => {
    const form = new FormData();
    form.append('file', blob, blob.name || 'face.jpg');
    clear(results, status('Searching…'));
    try {
      const res = await api('POST', '/sightings/search', { form });
      clear(results);
      show(res.sightings, false, null, `${res.sightings.length} sightings of this face (threshold ${fmtNum(res.threshold)})`);
    } catch (err) {
      clear(results, status(err.status === 404 ? 'Search by face is not available on this server.' : `Search failed: ${err.message}`, 'error'));
    }
  };

  function show(sightings, append, loadMore, heading) {
    const rows = sightings.map((s) => sightingCard(s, navigate));
    if (!append) clear(results, h('h2', {}, heading || `${sightings.length} sighting${sightings.length === 1 ? '' : 's'}`),
                       h('div.cards', { id: 'sightings' }));
    const cards = results.querySelector('#sightings');
    cards.append(...rows);
    results.querySelector('.more')?.remove();
    if (loadMore) results.append(h('div.actions.more', {}, h('button', { type: 'button', onclick: loadMore }, 'Older')));
    if (!sightings.length && !append) cards.append(status('Nothing found.'));
  }

  filters.addEventListener('submit', (e) => { e.preventDefault(); list(); });
  searchForm.addEventListener('submit', (e) => {
    e.preventDefault();
    if (!file.files.length) return toast('Choose a photo first', 'bad');
    return search(file.files[0]);
  });

  const stashed = params.get('search') === 'face' ? sessionStorage.getItem('facewatch.search-face') : null;
  if (stashed && canSearch) {
    sessionStorage.removeItem('facewatch.search-face');
    results.before(h('figure.panel', {}, h('img.recent', { src: `data:image/jpeg;base64,${stashed}`, alt: 'the face searched for' }),
      h('figcaption.small.muted', {}, 'The face searched for')));
    await search(base64ToBlob(stashed));
  } else {
    await list();
  }
  return undefined;
}

function sightingCard(s, navigate) {
  const who = s.subject ? (s.subject.name || s.subject.id) : s.group ? `unknown (group ${String(s.group).slice(0, 8)})` : 'unknown';
  const crop = typeof s.crop === 'string' ? authImg(s.crop, `face seen by ${s.camera}`, 'recent') : null;
  return h('article.card', { dataset: { sighting: s.id } }, crop,
    h('h3', {}, who, ' ', h(`span.badge.${s.decision === 'recognized' ? 'recognized' : 'unknown-face'}`, {}, s.decision || '')),
    h('p.small', {}, [s.camera, fmtTime(s.seen_at ?? s.first_seen), typeof s.similarity === 'number' ? `similarity ${fmtNum(s.similarity)}` : null,
                      typeof s.match_similarity === 'number' ? `match ${fmtNum(s.match_similarity)}` : null].filter(Boolean).join(' · ')),
    // An unknown face's "runner-up" is the subject it looked most like, not named.
    s.runner_up ? h('p.small.muted', {}, `${s.subject ? 'runner-up' : 'closest'} ${s.runner_up.subject?.id || '—'} `
      + fmtNum(s.runner_up.similarity)) : null,
    s.crop ? h('button', { type: 'button', onclick: async (e) => {
      // The crop is fetched (with credentials) only when someone wants to correct or search with it.
      const button = e.currentTarget;
      const b64 = await toBase64(await imageBlob(s.crop));
      const actions = faceActions(navigate, { subject: s.subject, cropBase64: b64, source: s.event_id || s.id });
      button.replaceWith(actions);
      actions.querySelector('button')?.focus();
    } }, 'Correct or search…') : null);
}
