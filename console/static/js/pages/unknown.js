// Unknown people: the groups grouping made of faces nobody enrolled, newest first, with their faces;
// merge, move a face, remove, ignore, promote to a subject; "this is X" on a face.
import { api, authImg, imageBlob } from '../api.js';
import { subscribe } from '../bus.js';
import { add, clear, confirmDialog, dialog, field, fmtAgo, fmtTime, h, latestOnly, status, toBase64, toast } from '../dom.js';
import { searchHistory, subjectPicker, thisIs } from '../feedback.js';
import { session } from '../session.js';

const PAGE = 40;
const enc = encodeURIComponent;
const cropPath = (g, f) => `/groups/${enc(g)}/faces/${enc(f)}/crop`;

export async function render(main, { navigate, params }) {
  const state = { group: params.get('group') || '', status: params.get('status') || 'active', camera: '', offset: 0 };
  const ticked = new Set(); // groups ticked for a merge
  let groups = [];
  const [statusF, statusSel] = field('Show', h('select', { name: 'status' },
    [['active', 'active'], ['ignored', 'ignored'], ['promoted', 'promoted'], ['', 'all']]
      .map(([v, t]) => h('option', { value: v, selected: state.status === v }, t))));
  const [cameraF, camera] = field('Camera', h('input', { name: 'camera', placeholder: 'any camera', maxlength: 200 }));
  const listEl = h('div', { 'aria-label': 'Groups, newest first' });
  const detailEl = h('section.panel', { 'aria-labelledby': 'group-h' });
  const refine = h('button', { type: 'button', onclick: async () => {
    try { await api('POST', '/groups/refine'); toast('Groups refined'); await drawList(); } catch (err) { toast(err.message, 'bad'); }
  } }, 'Refine (merge drifted groups)');
  main.append(h('h1', {}, 'Unknown people'),
    h('div.row', {}, statusF, cameraF, refine),
    h('div.cols.two', {}, h('section.panel', { 'aria-label': 'Groups' }, listEl), detailEl));

  async function drawList() {
    let page;
    try {
      page = await api('GET', '/groups', { query: { status: state.status, camera: state.camera, offset: state.offset, limit: PAGE } });
    } catch (err) {
      clear(listEl, status(err.status === 404 ? 'Grouping is off on this server.' : err.message, 'error'));
      return;
    }
    groups = page.groups;
    const more = groups.length === PAGE;
    clear(listEl,
      groups.length ? h('ul.list', {}, groups.map((g) => h('li.row', { dataset: { group: g.id } },
        h('input', { type: 'checkbox', 'aria-label': `tick group ${g.id.slice(0, 8)} to merge`, checked: ticked.has(g.id),
                     onchange: (e) => { if (e.target.checked) ticked.add(g.id); else ticked.delete(g.id); } }),
        h('button.item.grow', { type: 'button', 'aria-current': String(g.id === state.group),
                           onclick: () => { state.group = g.id; remember(); drawList(); drawDetail(); } },
          g.best_face ? h('span.mini', {}, authImg(cropPath(g.id, g.best_face), 'best face')) : null,
          h('span.grow.gap', {}, `${g.face_count} face${g.face_count === 1 ? '' : 's'}`,
            h('br'), h('span.small.muted', {}, `${g.cameras.join(', ') || 'uploads'} · ${fmtAgo(g.last_seen)}`)),
          h(`span.badge.${g.status}`, {}, g.status))))) : status('No groups here yet.'),
      h('div.row.small', {},
        h('button', { type: 'button', disabled: state.offset === 0, onclick: () => { state.offset = Math.max(0, state.offset - PAGE); drawList(); } }, 'Newer'),
        h('button', { type: 'button', disabled: !more, onclick: () => { state.offset += PAGE; drawList(); } }, 'Older')));
  }

  const remember = () => history.replaceState(null, '', `/unknown${state.group ? `?group=${enc(state.group)}` : ''}`);

  const detailTurn = latestOnly();
  async function drawDetail() {
    const mine = detailTurn();
    const heading = () => h('h2', { id: 'group-h' }, 'Group');
    clear(detailEl, heading());
    if (!state.group) return detailEl.append(status('Choose a group to see its faces.'));
    let g;
    try {
      g = await api('GET', `/groups/${enc(state.group)}`);
    } catch (err) {
      if (!mine()) return undefined;
      if (err.status === 404) { state.group = ''; remember(); return drawDetail(); }
      return detailEl.append(status(err.message, 'error'));
    }
    if (!mine()) return undefined;
    clear(detailEl, heading());
    const pickedFaces = new Set();
    const act = (label, fn, cls = '') => h(`button${cls}`, { type: 'button', onclick: async () => {
      try { await fn(); } catch (err) { toast(`${label}: ${err.message}`, 'bad'); }
    } }, label);
    const after = async () => { await drawList(); await drawDetail(); };
    const faces = h('div.grid', { 'aria-label': 'faces of this group' }, g.faces.map((f) => {
      const box = h('input.pick', { type: 'checkbox', 'aria-label': `tick face ${f.id.slice(0, 8)}`,
        onchange: (e) => { if (e.target.checked) pickedFaces.add(f.id); else pickedFaces.delete(f.id); fig.classList.toggle('selected', e.target.checked); } });
      const crop = async () => toBase64(await imageBlob(cropPath(g.id, f.id)));
      const fig = h('figure.face', { dataset: { face: f.id } }, box, authImg(cropPath(g.id, f.id), `face from ${f.camera || f.source}`),
        h('figcaption.small.muted', { title: fmtTime(f.seen_at) }, `${f.camera || 'upload'} · ${new Date(f.seen_at * 1000).toLocaleTimeString()}`),
        h('div.actions', {},
          h('button.small', { type: 'button', onclick: async () => thisIs(await crop()) }, 'This is…'),
          h('button.small', { type: 'button', onclick: async () => searchHistory(navigate, await crop()) }, 'History'),
          h('button.small.danger', { type: 'button', 'aria-label': `Remove face ${f.id.slice(0, 8)}`, onclick: async () => {
            try { await api('DELETE', `/groups/${enc(g.id)}/faces/${enc(f.id)}`); } catch (err) { toast(err.message, 'bad'); }
            await after();
          } }, 'Remove')));
      return fig;
    }));

    add(detailEl,
      h('p', {}, h(`span.badge.${g.status}`, {}, g.status), ` ${g.face_count} faces · first seen ${fmtTime(g.first_seen)} · `
        + `last seen ${fmtTime(g.last_seen)} · ${g.cameras.join(', ') || 'uploads'}`),
      g.subject ? h('p', {}, `Promoted to ${g.subject.subject} in ${g.subject.gallery}.`) : null,
      h('div.actions', {},
        act('Promote to a subject', () => promote(g, after), '.primary'),
        act('Merge ticked groups into this one', async () => {
          const others = [...ticked].filter((id) => id !== g.id);
          if (!others.length) throw new Error('tick the groups to merge in the list first');
          await api('POST', `/groups/${enc(g.id)}/merge`, { json: { groups: others } });
          others.forEach((id) => ticked.delete(id));
          toast(`${others.length} group${others.length === 1 ? '' : 's'} merged`);
          await after();
        }),
        act('Move ticked faces…', () => moveFaces(g, [...pickedFaces], groups, after)),
        act(g.status === 'ignored' ? 'Stop ignoring' : 'Ignore', async () => {
          await api('POST', `/groups/${enc(g.id)}/ignore`, { json: { ignore: g.status !== 'ignored' } });
          await after();
        }),
        act('Delete group', async () => {
          if (!await confirmDialog('Delete this group?', `Its ${g.face_count} faces go with it.`)) return;
          await api('DELETE', `/groups/${enc(g.id)}`);
          state.group = '';
          remember();
          await after();
        }, '.danger')),
      g.faces.length ? faces : status('No faces.'));
    return undefined;
  }

  statusSel.addEventListener('change', () => { state.status = statusSel.value; state.offset = 0; drawList(); });
  camera.addEventListener('change', () => { state.camera = camera.value.trim(); state.offset = 0; drawList(); });

  // Grouping changes (this console's, another user's, the cameras') refresh the list.
  let pending = null;
  const topic = session()?.me?.topics?.grouping;
  let stop = () => {};
  try {
    stop = topic ? subscribe(topic, () => {
      clearTimeout(pending);
      pending = setTimeout(drawList, 500);
    }) : stop;
  } catch (err) {
    console.warn(err.message);
  }
  await drawList();
  if (!state.group && groups.length) state.group = groups[0].id;
  await drawList();
  await drawDetail();
  return () => { stop(); clearTimeout(pending); };
}

async function promote(g, after) {
  const [picker, read] = subjectPicker({ allowNew: false });
  const [nameF, name] = field('Name of the new subject', h('input', { name: 'name', required: true, maxlength: 200 }));
  const [idF, id] = field('Subject id (optional)', h('input', { name: 'subject_id', maxlength: 200, pattern: '[A-Za-z0-9_.\\-]{1,200}' }),
                          'Letters, digits, ".", "_" or "-"; empty: made from the name.');
  // Only the gallery of the picker is used: a promotion makes a new subject.
  const galleryOnly = picker.querySelector('select[name="gallery"]').closest('.field');
  const done = await dialog('Promote to a subject', h('div', {}, galleryOnly, nameF, idF), {
    submitLabel: 'Promote',
    onSubmit: async () => {
      const gallery = galleryOnly.querySelector('select').value;
      if (!gallery) throw new Error('make a gallery first (Faces page)');
      const body = { gallery, name: name.value.trim() };
      if (id.value.trim()) body.subject = id.value.trim();
      return api('POST', `/groups/${enc(g.id)}/promote`, { json: body });
    },
  });
  void read;
  if (done) {
    toast(`Promoted to ${done.subject?.subject || 'a subject'}`);
    await after();
  }
}

async function moveFaces(g, faceIds, groups, after) {
  if (!faceIds.length) throw new Error('tick the faces to move first');
  const [f, target] = field('Move them to', h('select', { name: 'target' },
    groups.filter((x) => x.id !== g.id).map((x) => h('option', { value: x.id },
      `${x.id.slice(0, 8)} · ${x.face_count} faces · ${x.cameras.join(', ') || 'uploads'}`))));
  const done = await dialog(`Move ${faceIds.length} face${faceIds.length === 1 ? '' : 's'}`, f, {
    submitLabel: 'Move',
    onSubmit: async () => {
      if (!target.value) throw new Error('no other group to move them to');
      await api('POST', `/groups/${enc(target.value)}/faces`, { json: { faces: faceIds } });
      return true;
    },
  });
  if (done) { toast('Moved'); await after(); }
}
