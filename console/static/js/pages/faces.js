// The face repo: galleries, subjects, faces with thumbnails; uploads with progress, rename/merge, delete;
// bulk enrolment from a zip with its progress live from /topic/jobs.<id>.
import { api, authImg, imageBlob, upload } from '../api.js';
import { subscribe } from '../bus.js';
import { add, clear, confirmDialog, dialog, field, fmtTime, h, latestOnly, status, toast } from '../dom.js';
import { searchHistory } from '../feedback.js';

const PAGE = 50;
const NAME = /^(?!\.+$)[A-Za-z0-9_. -]{1,200}$/;
const NAME_HINT = '1-200 letters, digits, spaces, ".", "_" or "-"';
const enc = encodeURIComponent;

export async function render(main, { navigate, params }) {
  const state = { gallery: params.get('gallery') || '', subject: params.get('subject') || '', offset: 0 };
  const galleriesEl = h('section.panel', { 'aria-labelledby': 'galleries-h' });
  const subjectsEl = h('section.panel', { 'aria-labelledby': 'subjects-h' });
  const detailEl = h('section.panel', { 'aria-labelledby': 'detail-h' });
  main.append(h('h1', {}, 'Faces'), h('div.cols.three', {}, galleriesEl, subjectsEl, detailEl));
  const stops = [];
  const progress = h('ul.upload-list', { 'aria-label': 'Uploads' }); // kept while the same subject is shown
  let progressOf = '';

  // One bulk-enrolment box per gallery, kept across redraws (a job's progress stays on screen).
  const bulkBoxes = new Map();
  const bulkFor = (name) => {
    if (!bulkBoxes.has(name)) bulkBoxes.set(name, bulkEnrol(name, stops, () => refreshAll()));
    return bulkBoxes.get(name);
  };

  const remember = () => {
    const q = new URLSearchParams();
    if (state.gallery) q.set('gallery', state.gallery);
    if (state.subject) q.set('subject', state.subject);
    history.replaceState(null, '', `/faces${q.toString() ? `?${q}` : ''}`);
  };

  // Galleries
  async function drawGalleries() {
    let galleries;
    try {
      ({ galleries } = await api('GET', '/galleries'));
    } catch (err) {
      clear(galleriesEl, h('h2', { id: 'galleries-h' }, 'Galleries'), status(err.message, 'error'));
      return;
    }
    if (state.gallery && !galleries.some((g) => g.name === state.gallery)) state.gallery = '';
    if (!state.gallery && galleries.length) state.gallery = galleries[0].name;
    const newName = h('input', { name: 'gallery', 'aria-label': 'New gallery name', placeholder: 'new gallery', maxlength: 200 });
    const form = h('form.row', { onsubmit: async (e) => {
      e.preventDefault();
      const name = newName.value.trim();
      if (!NAME.test(name)) return toast(`A gallery name is ${NAME_HINT}`, 'bad');
      try {
        await api('POST', '/galleries', { json: { name } });
        state.gallery = name;
        state.subject = '';
        await refreshAll();
      } catch (err) { toast(err.message, 'bad'); }
      return undefined;
    } }, newName, h('button', { type: 'submit' }, 'Add'));
    const current = galleries.find((g) => g.name === state.gallery);
    clear(galleriesEl, h('h2', { id: 'galleries-h' }, 'Galleries'),
      galleries.length ? h('ul.list', {}, galleries.map((g) => h('li', {}, h('button.item', {
        type: 'button', 'aria-pressed': String(g.name === state.gallery),
        onclick: async () => { state.gallery = g.name; state.subject = ''; state.offset = 0; await refreshAll(); },
      }, h('span', {}, g.name), h('span.muted.small', {}, `${g.subjects} subject${g.subjects === 1 ? '' : 's'} · ${g.faces} face${g.faces === 1 ? '' : 's'}`)))))
        : status('No galleries yet.'),
      form,
      current ? h('div.actions', {},
        h('button', { type: 'button', onclick: () => renameGallery(current) }, 'Rename'),
        h('button.danger', { type: 'button', onclick: () => deleteGallery(current) }, 'Delete')) : null,
      current ? bulkFor(current.name) : null);
  }

  async function renameGallery(g) {
    const [f, input] = field('New name', h('input', { value: g.name, required: true, maxlength: 200 }), NAME_HINT);
    const done = await dialog(`Rename gallery ${g.name}`, f, { submitLabel: 'Rename', onSubmit: async () => {
      if (!NAME.test(input.value.trim())) throw new Error(`a gallery name is ${NAME_HINT}`);
      return api('PATCH', `/galleries/${enc(g.name)}`, { json: { name: input.value.trim() } });
    } });
    if (done) { state.gallery = done.name; await refreshAll(); }
  }

  async function deleteGallery(g) {
    if (!await confirmDialog(`Delete gallery ${g.name}?`, `Its ${g.subjects} subjects and ${g.faces} faces go with it.`)) return;
    try {
      await api('DELETE', `/galleries/${enc(g.name)}`);
      state.gallery = '';
      state.subject = '';
      await refreshAll();
    } catch (err) { toast(err.message, 'bad'); }
  }

  // Subjects
  const subjectsTurn = latestOnly();
  async function drawSubjects() {
    const mine = subjectsTurn();
    clear(subjectsEl, h('h2', { id: 'subjects-h' }, 'Subjects'));
    if (!state.gallery) return subjectsEl.append(status('Choose or make a gallery.'));
    let page;
    try {
      page = await api('GET', `/galleries/${enc(state.gallery)}/subjects`, { query: { offset: state.offset, limit: PAGE } });
    } catch (err) {
      return mine() ? subjectsEl.append(status(err.message, 'error')) : undefined;
    }
    if (!mine()) return undefined;
    const newName = h('input', { name: 'subject', 'aria-label': 'New subject name', placeholder: 'new subject\'s name',
                                 maxlength: 200, required: true });
    const form = h('form.row', { onsubmit: async (e) => {
      e.preventDefault();
      try {
        const made = await api('POST', `/galleries/${enc(state.gallery)}/subjects`, { json: { name: newName.value.trim() } });
        state.subject = made.id;
        await refreshAll();
      } catch (err) { toast(err.message, 'bad'); }
    } }, newName, h('button', { type: 'submit' }, 'Add'));
    const pager = page.total > PAGE ? h('div.row.small', {},
      h('button', { type: 'button', disabled: state.offset === 0,
                    onclick: () => { state.offset = Math.max(0, state.offset - PAGE); drawSubjects(); } }, 'Previous'),
      h('span', {}, `${state.offset + 1}-${Math.min(page.total, state.offset + PAGE)} of ${page.total}`),
      h('button', { type: 'button', disabled: state.offset + PAGE >= page.total,
                    onclick: () => { state.offset += PAGE; drawSubjects(); } }, 'Next')) : null;
    add(subjectsEl,
      page.subjects.length ? h('ul.list', {}, page.subjects.map((s) => h('li', {}, h('button.item', {
        type: 'button', 'aria-pressed': String(s.id === state.subject),
        onclick: async () => { state.subject = s.id; remember(); await drawSubjects(); await drawDetail(); },
      }, h('span', {}, s.name), h('span.muted.small', {}, `${s.faces} face${s.faces === 1 ? '' : 's'}`))))) : status('No subjects yet.'),
      pager, form);
    return undefined;
  }

  // One subject: faces, uploads, rename/merge, delete
  const detailTurn = latestOnly();
  async function drawDetail() {
    const mine = detailTurn();
    clear(detailEl, h('h2', { id: 'detail-h' }, 'Faces'));
    if (!state.gallery || !state.subject) return detailEl.append(status('Choose a subject to see and add faces.'));
    const base = `/galleries/${enc(state.gallery)}/subjects/${enc(state.subject)}`;
    let subject;
    let faces;
    try {
      [subject, { faces }] = await Promise.all([api('GET', base), api('GET', `${base}/faces`)]);
    } catch (err) {
      if (!mine()) return undefined;
      if (err.status === 404) { state.subject = ''; remember(); return drawDetail(); }
      return detailEl.append(status(err.message, 'error'));
    }
    if (!mine()) return undefined;
    const files = h('input', { type: 'file', accept: 'image/*', multiple: true, id: 'face-files' });
    if (progressOf !== `${state.gallery}/${state.subject}`) {
      progressOf = `${state.gallery}/${state.subject}`;
      clear(progress);
    }
    const uploadAll = async (list) => {
      const items = [...list].map((file) => {
        const bar = h('progress', { max: 1, value: 0, 'aria-label': `upload of ${file.name}` });
        const said = h('span.small.muted', {}, 'uploading');
        progress.append(h('li', {}, h('span', {}, file.name), said, bar));
        return { file, bar, said };
      });
      let added = 0;
      await Promise.all(items.map(async ({ file, bar, said }) => {
        const form = new FormData();
        form.append('file', file, file.name);
        try {
          const res = await upload(`${base}/faces`, form, (p) => { bar.value = p; });
          added += res.faces.length;
          said.textContent = 'added';
        } catch (err) {
          said.textContent = err.message;
          said.className = 'error small';
        }
      }));
      toast(`${added} face${added === 1 ? '' : 's'} added to ${subject.name}`);
      await refreshAll();
    };
    files.addEventListener('change', () => files.files.length && uploadAll(files.files));
    const drop = h('div.drop', {}, h('label', { for: 'face-files' }, 'Add faces: choose photos (several at once) or drop them here'), files);
    drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
    drop.addEventListener('dragleave', () => drop.classList.remove('over'));
    drop.addEventListener('drop', (e) => { e.preventDefault(); drop.classList.remove('over'); uploadAll(e.dataTransfer.files); });

    const grid = h('div.grid', { 'aria-label': `faces of ${subject.name}` }, faces.map((f) => h('figure.face', { dataset: { face: f.id } },
      authImg(`/faces/${f.id}/thumbnail`, `face of ${subject.name}`),
      h('figcaption.small.muted', {}, `quality ${f.quality.toFixed(2)} · ${fmtTime(f.created_at).split(',')[0]}`),
      h('div.actions', {},
        h('button.small', { type: 'button', title: 'Look for this face in the history',
          onclick: async () => searchHistory(navigate, await imageBlob(`/faces/${f.id}/thumbnail`)) }, 'History'),
        h('button.danger.small', { type: 'button', 'aria-label': `Delete this face of ${subject.name}`, onclick: async () => {
          if (!await confirmDialog('Delete this face?', `It is removed from ${subject.name}.`)) return;
          try { await api('DELETE', `/faces/${f.id}`); } catch (err) { toast(err.message, 'bad'); }
          await drawDetail();
          await drawSubjects();
        } }, 'Delete')))));

    add(detailEl,
      h('h3', {}, `${subject.name} `, h('span.muted.small', {}, `(${subject.id} in ${state.gallery})`)),
      h('div.actions', {},
        h('button', { type: 'button', onclick: () => renameSubject(base, subject) }, 'Rename or merge'),
        h('button.danger', { type: 'button', onclick: async () => {
          if (!await confirmDialog(`Delete ${subject.name}?`, `Their ${faces.length} faces go with them.`)) return;
          try { await api('DELETE', base); } catch (err) { toast(err.message, 'bad'); }
          state.subject = '';
          await refreshAll();
        } }, 'Delete subject')),
      drop, progress,
      faces.length ? grid : status('No faces yet.'));
    return undefined;
  }

  async function renameSubject(base, subject) {
    const [f, input] = field('Name', h('input', { value: subject.name, required: true, maxlength: 200 }),
                             'The name of another subject of this gallery merges the two.');
    const done = await dialog(`Rename ${subject.name}`, f, { submitLabel: 'Rename', onSubmit: () =>
      api('PATCH', base, { json: { name: input.value.trim() } }) });
    if (done) {
      if (done.id !== subject.id) toast(`Merged into ${done.name}`);
      state.subject = done.id;
      await refreshAll();
    }
  }

  async function refreshAll() {
    await drawGalleries();
    remember();
    await drawSubjects();
    await drawDetail();
  }

  await refreshAll();
  return () => stops.forEach((stop) => stop());
}

/** A zip of <subject>/<image> enrolled as a job; progress from the job's topic. */
function bulkEnrol(gallery, stops, onDone) {
  const file = h('input', { type: 'file', accept: '.zip,application/zip', id: 'enrol-zip' });
  const bar = h('progress', { max: 1, value: 0, hidden: true, 'aria-label': 'bulk enrolment progress' });
  const line = h('p.small', { 'aria-live': 'polite' });
  const start = h('button', { type: 'button' }, 'Enrol the zip');
  start.addEventListener('click', async () => {
    if (!file.files.length) return toast('Choose a zip of <subject>/<image> files first', 'bad');
    start.disabled = true;
    bar.hidden = false;
    bar.value = 0;
    line.textContent = 'Uploading…';
    const form = new FormData();
    form.append('file', file.files[0], file.files[0].name);
    try {
      const job = await upload(`/galleries/${enc(gallery)}/enrol`, form, (p) => { line.textContent = `Uploading ${Math.round(p * 100)}%`; });
      const show = (j) => {
        bar.max = Math.max(1, j.total);
        bar.value = j.done;
        line.textContent = `Job ${(j.job ?? j.id).slice(0, 8)}: ${j.status}, ${j.done} of ${j.total} images`;
        if (['done', 'failed', 'cancelled'].includes(j.status)) {
          const failures = j.result?.failures || j.result?.failed || [];
          if (Array.isArray(failures) && failures.length) line.textContent += `; ${failures.length} failed`;
          stop();
          start.disabled = false;
          onDone();
        }
      };
      const stop = subscribe(`/topic/jobs.${job.id}`, show);
      stops.push(stop);
      show(await api('GET', `/jobs/${job.id}`)); // whatever happened before the subscription
    } catch (err) {
      line.textContent = `Not enrolled: ${err.message}`;
      start.disabled = false;
    }
    return undefined;
  });
  return h('details', {}, h('summary', {}, 'Bulk enrolment from a zip'),
    h('label', { for: 'enrol-zip' }, 'Zip of <subject>/<image> files'), file,
    h('div.actions', {}, start), bar, line);
}
