// Test a photo: upload, paste or drop one; detect, identify or verify; the answer drawn on it.
import { api } from '../api.js';
import { clear, field, fmtNum, h, status, toast } from '../dom.js';
import { searchHistory } from '../feedback.js';

const PLUGINS = ['age', 'gender', 'pose', 'liveness', 'expression', 'eyes', 'landmarks'];
const COLORS = { matched: '#1e7b45', unknown: '#b3261e', face: '#1f6fd1' };

export async function render(main, { navigate }) {
  let photo = null; // Blob
  let photo2 = null;
  let image = null; // HTMLImageElement of photo
  const canvas = h('canvas', { width: 640, height: 360, role: 'img', 'aria-label': 'the photo with the faces found' });
  const results = h('div', { 'aria-live': 'polite' });
  const file = h('input', { type: 'file', accept: 'image/*', id: 'test-file' });
  const drop = h('div.drop', { tabindex: 0, 'aria-label': 'Photo: choose a file, drop one, or paste (Ctrl+V) an image' },
    h('label', { for: 'test-file' }, 'Photo: choose a file, drop it here, or paste an image (Ctrl+V)'), file);

  const mode = (value, text, checked) => h('label.inline', {}, h('input', { type: 'radio', name: 'mode', value, checked }), text);
  const modes = h('fieldset', {}, h('legend', {}, 'What to do'),
    mode('detect', 'Detect: faces, landmarks, attributes', true), mode('identify', 'Identify: who, from the galleries'),
    mode('verify', 'Verify: the same person as…'));
  const pluginBox = h('fieldset', {}, h('legend', {}, 'Attributes (detect)'),
    PLUGINS.map((p) => h('label.inline', {}, h('input', { type: 'checkbox', name: `plugin-${p}`, checked: ['age', 'gender'].includes(p) }), p)));
  const galleryBox = h('fieldset', {}, h('legend', {}, 'Galleries (identify; none ticked: all)'));
  const [presetF, preset] = field('Threshold', h('select', { name: 'threshold' },
    [['', 'server default'], ['strict', 'strict'], ['medium', 'medium'], ['low', 'low'], ['custom', 'a fixed cosine…']]
      .map(([v, t]) => h('option', { value: v }, t))), 'Presets are error rates the server calibrated.');
  const [cosF, cosine] = field('Fixed cosine (-1 to 1)', h('input', { type: 'number', min: -1, max: 1, step: 'any', name: 'cosine' }));
  cosF.hidden = true;
  preset.addEventListener('change', () => { cosF.hidden = preset.value !== 'custom'; });
  const [detF, detProb] = field('Lowest detection confidence (0-1)', h('input', { type: 'number', min: 0, max: 1, step: 'any', name: 'det_prob_threshold' }));
  const [countF, count] = field('Candidates per face (identify)', h('input', { type: 'number', min: 1, max: 100, step: 1, value: 3, name: 'prediction_count' }));
  const file2 = h('input', { type: 'file', accept: 'image/*', id: 'test-file2' });
  const [faceIdF, faceId] = field('…or a face id', h('input', { name: 'face_id' }));
  const [vgF, vGallery] = field('…or gallery', h('input', { name: 'gallery' }));
  const [vsF, vSubject] = field('and subject id', h('input', { name: 'subject' }));
  const verifyBox = h('fieldset', { hidden: true }, h('legend', {}, 'Verify against'),
    h('label', { for: 'test-file2' }, 'A second photo'), file2, faceIdF, h('div.row', {}, vgF, vsF));
  const run = h('button.primary', { type: 'submit' }, 'Run');
  const form = h('form.panel', {}, drop, modes, pluginBox, galleryBox, verifyBox, presetF, cosF, detF, countF,
                 h('div.actions', {}, run));
  main.append(h('h1', {}, 'Test a photo'), h('div.cols.two', {}, form,
    h('section.panel', { 'aria-label': 'Result' }, h('div.stage', {}, canvas), results)));

  api('GET', '/galleries').then(({ galleries }) => {
    galleryBox.append(...(galleries.length ? galleries.map((g) => h('label.inline', {}, h('input', { type: 'checkbox', name: `gallery-${g.name}`, value: g.name }), g.name))
      : [h('p.muted.small', {}, 'No galleries yet.')]));
  }).catch(() => {});

  const currentMode = () => form.elements.mode.value;
  const showOptions = () => {
    const m = currentMode();
    pluginBox.hidden = m !== 'detect';
    galleryBox.hidden = m !== 'identify';
    countF.hidden = m !== 'identify';
    verifyBox.hidden = m !== 'verify';
    presetF.hidden = m === 'detect';
    cosF.hidden = m === 'detect' || preset.value !== 'custom';
  };
  modes.addEventListener('change', showOptions);
  showOptions();

  const setPhoto = async (blob) => {
    if (!blob || !blob.type.startsWith('image/')) return toast('That is not an image', 'bad');
    photo = blob;
    image = await loadImage(blob);
    draw(canvas, image, []);
    clear(results, status('Ready: choose what to do and run.'));
    return undefined;
  };
  file.addEventListener('change', () => setPhoto(file.files[0]));
  file2.addEventListener('change', () => { photo2 = file2.files[0] || null; });
  drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => { e.preventDefault(); drop.classList.remove('over'); setPhoto(e.dataTransfer.files[0]); });
  const onPaste = (e) => {
    const item = [...(e.clipboardData?.items || [])].find((i) => i.type.startsWith('image/'));
    if (item) { e.preventDefault(); setPhoto(item.getAsFile()); }
  };
  document.addEventListener('paste', onPaste);

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (!photo) return toast('Choose a photo first', 'bad');
    const m = currentMode();
    const body = new FormData();
    body.append('file', photo, photo.name || 'pasted.png');
    if (detProb.value !== '') body.append('det_prob_threshold', detProb.value);
    const threshold = preset.value === 'custom' ? cosine.value : preset.value;
    if (m !== 'detect' && threshold) body.append('threshold', threshold);
    run.disabled = true;
    clear(results, status('Working…'));
    try {
      if (m === 'detect') {
        const plugins = PLUGINS.filter((p) => form.elements[`plugin-${p}`].checked);
        if (plugins.length) body.append('face_plugins', plugins.join(','));
        const res = await api('POST', '/detect', { form: body });
        show(res.faces, res, (f, i) => `face ${i + 1}`, () => COLORS.face);
      } else if (m === 'identify') {
        const galleries = [...galleryBox.querySelectorAll('input:checked')].map((i) => i.value);
        if (galleries.length) body.append('galleries', galleries.join(','));
        if (count.value) body.append('prediction_count', count.value);
        const res = await api('POST', '/identify', { form: body });
        show(res.faces, res, (f) => (f.matches?.[0] ? `${f.matches[0].name} ${fmtNum(f.matches[0].similarity, 2)}` : 'unknown'),
             (f) => (f.matches?.length ? COLORS.matched : COLORS.unknown));
      } else {
        if (photo2) body.append('image2', photo2, photo2.name);
        else if (faceId.value.trim()) body.append('face_id', faceId.value.trim());
        else if (vGallery.value.trim() && vSubject.value.trim()) {
          body.append('gallery', vGallery.value.trim());
          body.append('subject', vSubject.value.trim());
        } else throw new Error('verify needs a second photo, a face id, or a gallery and subject');
        const detectBody = new FormData();
        detectBody.append('file', photo, photo.name || 'pasted.png');
        const [res, found] = await Promise.all([api('POST', '/verify', { form: body }),
                                                api('POST', '/detect', { form: detectBody })]);
        const label = `${res.verified ? 'same person' : 'not the same'} ${fmtNum(res.similarity, 2)}`;
        show(found.faces.slice(0, 1), res, () => label, () => (res.verified ? COLORS.matched : COLORS.unknown));
        results.prepend(h(`p.${res.verified ? 'badge.recognized' : 'badge.unknown-face'}`, {},
          `${res.verified ? 'Verified' : 'Not verified'}: similarity ${fmtNum(res.similarity)} against threshold ${fmtNum(res.threshold)}`));
      }
    } catch (err) {
      clear(results, status(`Failed: ${err.message}`, 'error'));
    } finally {
      run.disabled = false;
    }
    return undefined;
  });

  function show(faces, raw, label, color) {
    draw(canvas, image, faces.map((f, i) => ({ face: f, label: label(f, i), color: color(f) })));
    clear(results,
      h('p', {}, `${faces.length} face${faces.length === 1 ? '' : 's'} found.`),
      faces.map((f, i) => faceDetails(f, i, label(f, i), navigate, image)),
      h('details', {}, h('summary', {}, 'The answer as JSON'), h('pre', {}, JSON.stringify(raw, null, 2))));
  }

  return () => document.removeEventListener('paste', onPaste);
}

function loadImage(blob) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error('the browser cannot show this image'));
    img.src = URL.createObjectURL(blob);
  });
}

const boxOf = (f) => (Array.isArray(f.box) ? f.box : [f.box.x_min, f.box.y_min, f.box.x_max, f.box.y_max]);

function draw(canvas, img, marks) {
  if (!img) return;
  canvas.width = img.naturalWidth;
  canvas.height = img.naturalHeight;
  const ctx = canvas.getContext('2d');
  ctx.drawImage(img, 0, 0);
  const unit = Math.max(2, Math.round(Math.max(img.naturalWidth, img.naturalHeight) / 300));
  ctx.font = `${unit * 7}px system-ui, sans-serif`;
  for (const { face, label, color } of marks) {
    const [x1, y1, x2, y2] = boxOf(face);
    ctx.lineWidth = unit;
    ctx.strokeStyle = color;
    ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
    ctx.fillStyle = '#f0a30a';
    for (const [x, y] of face.landmarks || []) {
      ctx.beginPath();
      ctx.arc(x, y, unit * 1.2, 0, 2 * Math.PI);
      ctx.fill();
    }
    const width = ctx.measureText(label).width + unit * 2;
    const top = Math.max(0, y1 - unit * 9);
    ctx.fillStyle = color;
    ctx.fillRect(x1, top, width, unit * 9);
    ctx.fillStyle = '#fff';
    ctx.fillText(label, x1 + unit, top + unit * 7);
  }
}

function attributeText(attrs) {
  return Object.entries(attrs || {}).map(([k, v]) => {
    if (v && typeof v === 'object') {
      if ('value' in v) return `${k}: ${v.value}${typeof v.score === 'number' ? ` (${v.score.toFixed(2)})` : ''}`;
      return `${k}: ${Object.entries(v).map(([a, b]) => `${a} ${typeof b === 'number' ? b.toFixed(1) : b}`).join(', ')}`;
    }
    return `${k}: ${typeof v === 'number' ? v.toFixed(1) : v}`;
  });
}

function faceDetails(f, i, label, navigate, img) {
  const q = f.quality || {};
  const candidates = f.candidates?.length ? h('p.small', {}, 'candidates: ', f.candidates.map((c) =>
    `${c.name} (${c.gallery}) ${fmtNum(c.similarity)}`).join(' · ')) : null;
  const decision = f.decision ? h('p.small.muted', {}, `decision: ${f.decision.reason}, threshold ${fmtNum(f.decision.threshold)}`) : null;
  return h('section.card', {},
    h('h3', {}, label === `face ${i + 1}` ? `Face ${i + 1}` : `Face ${i + 1}: ${label}`),
    h('p.small', {}, `confidence ${fmtNum(f.box?.probability, 2)} · quality ${fmtNum(typeof q === 'number' ? q : q.score, 2)}`
      + (q.size_px ? ` · ${Math.round(q.size_px)} px` : '')),
    attributeText(f.attributes).length ? h('ul.small', {}, attributeText(f.attributes).map((t) => h('li', {}, t))) : null,
    candidates, decision,
    h('div.actions', {}, h('button', { type: 'button', onclick: async () => searchHistory(navigate, await cropFace(img, boxOf(f))) },
      'Search history for this face')));
}

/** The face's box (with a margin) cut from the photo, as a JPEG blob. */
function cropFace(img, [x1, y1, x2, y2]) {
  const m = 0.25 * Math.max(x2 - x1, y2 - y1);
  const sx = Math.max(0, x1 - m);
  const sy = Math.max(0, y1 - m);
  const sw = Math.min(img.naturalWidth, x2 + m) - sx;
  const sh = Math.min(img.naturalHeight, y2 + m) - sy;
  const c = document.createElement('canvas');
  c.width = Math.round(sw);
  c.height = Math.round(sh);
  c.getContext('2d').drawImage(img, sx, sy, sw, sh, 0, 0, c.width, c.height);
  return new Promise((resolve) => c.toBlob(resolve, 'image/jpeg', 0.9));
}
