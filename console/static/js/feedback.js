// Corrections on any face shown (an event's crop, a group's face, a sighting): "not X" (a negative for
// the subject named) and "this is X" (the crop enrolled as a face of X); and "search history" by that face.
import { api } from './api.js';
import { dialog, field, h, toBase64, toast } from './dom.js';

/** Gallery and subject pickers (an existing subject, or a new one by name); returns [element, read()]. */
export function subjectPicker({ allowNew = true } = {}) {
  const [galleryField, gallery] = field('Gallery', h('select', { name: 'gallery', required: true }));
  const [subjectField, subject] = field('Subject', h('select', { name: 'subject' }));
  const [newField, newName] = field('…or a new subject named', h('input', { name: 'new_subject', maxlength: 200 }),
                                    'Leave empty to use the subject chosen above.');
  const load = async () => {
    const { subjects } = await api('GET', `/galleries/${encodeURIComponent(gallery.value)}/subjects`, { query: { limit: 1000 } });
    subject.replaceChildren(...subjects.map((s) => h('option', { value: s.id }, `${s.name} (${s.id})`)));
  };
  gallery.addEventListener('change', () => load().catch((e) => toast(e.message, 'bad')));
  api('GET', '/galleries').then(({ galleries }) => {
    gallery.replaceChildren(...galleries.map((g) => h('option', { value: g.name }, g.name)));
    if (galleries.length) return load();
    return null;
  }).catch((e) => toast(e.message, 'bad'));
  const read = async () => {
    if (!gallery.value) throw new Error('make a gallery first (Faces page)');
    const name = newName.value.trim();
    if (allowNew && name) {
      const made = await api('POST', `/galleries/${encodeURIComponent(gallery.value)}/subjects`, { json: { name } });
      return { gallery: gallery.value, subject: made.id, name: made.name };
    }
    if (!subject.value) throw new Error('choose a subject or name a new one');
    return { gallery: gallery.value, subject: subject.value, name: subject.selectedOptions[0]?.textContent };
  };
  return [h('div', {}, galleryField, subjectField, allowNew ? newField : null), read];
}

const facesPath = (g, s) => `/galleries/${encodeURIComponent(g)}/subjects/${encodeURIComponent(s)}`;

/** "Not X": the crop becomes a negative of the subject it was matched to. */
export async function notThem(subject, cropBase64, source) {
  const label = subject.name || subject.id;
  const ok = await dialog(`Not ${label}?`, h('p', {}, `This face will no longer be named ${label} (nor faces closer to it `
    + 'than to them), on every camera.'), {
    submitLabel: `Not ${label}`,
    onSubmit: async () => {
      await api('POST', `${facesPath(subject.gallery, subject.id)}/negatives`,
                { json: { image: cropBase64, source: source || 'console', force: true } });
      return true;
    },
  });
  if (ok) toast(`Noted: not ${label}`);
}

/** "This is X": the crop enrolled as a face of a chosen (or new) subject. */
export async function thisIs(cropBase64) {
  const [picker, read] = subjectPicker();
  const force = h('input', { type: 'checkbox', name: 'force' });
  const done = await dialog('Who is this?', h('div', {}, h('img.recent', { src: `data:image/jpeg;base64,${cropBase64}`, alt: 'the face' }),
    picker, h('label.inline', {}, force, 'enrol even if the face is small or blurred')), {
    submitLabel: 'Add the face',
    onSubmit: async () => {
      const target = await read();
      await api('POST', `${facesPath(target.gallery, target.subject)}/faces`,
                { json: { image: cropBase64, force: force.checked } });
      return target;
    },
  });
  if (done) toast(`Added as a face of ${done.name || done.subject}`);
}

/** Opens History searching for this face (from a base64 JPEG or a Blob). */
export async function searchHistory(navigate, image) {
  const b64 = typeof image === 'string' ? image : await toBase64(image);
  sessionStorage.setItem('facewatch.search-face', b64);
  navigate('/history?search=face');
}

/** The buttons for a face: not X (when named), this is X, search history. */
export function faceActions(navigate, { subject, cropBase64, source }) {
  if (!cropBase64) return null;
  return h('div.actions', {},
    subject ? h('button', { type: 'button', onclick: () => notThem(subject, cropBase64, source) },
      `Not ${subject.name || subject.id}`) : null,
    h('button', { type: 'button', onclick: () => thisIs(cropBase64) }, 'This is…'),
    h('button', { type: 'button', onclick: () => searchHistory(navigate, cropBase64) }, 'Search history'));
}
