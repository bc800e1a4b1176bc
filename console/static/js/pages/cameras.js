// Cameras: register (every setting, checked as the API checks it), edit, start, stop, delete; the latest
// frame of each and the latest face each one sent. All of it over the STOMP API (/queue/facewatch.api).
import { api } from '../api.js';
import { request, subscribe } from '../bus.js';
import { cameraPath, cameraTopic, latestFaces, listCameras, noteFace, statusLines } from '../cameras.js';
import { clear, confirmDialog, dialog, field, fieldError, fmtAgo, h, status, toast } from '../dom.js';

const CAMERA_ID = /^[a-z0-9][a-z0-9_-]{0,63}$/;
const NODE_NAME = /^[A-Za-z0-9_.-]{1,200}$/;
const SOURCE = /^(rtsps?:\/\/.+|https?:\/\/.+|file:\/\/\/.+|\/dev\/video\d+)$/;
const ATTRIBUTES = ['age', 'gender', 'pose', 'liveness', 'expression', 'eyes'];
const DEFAULTS = { name: '', url: '', rtsp_transport: 'tcp', loop: false, galleries: [], max_fps: 5, min_face_px: 32,
                   min_quality: null, threshold: null, cooldown_s: 30, unknown_after_frames: 5, attach_crop: true,
                   attributes: [], msgpack: false };

const frames = new Map(); // camera id -> {image (base64 JPEG), time, index}

export async function render(main, { navigate }) {
  const list = h('div.cards', { 'aria-label': 'Cameras' });
  const note = status('Loading cameras…');
  const add = h('button.primary', { type: 'button' }, 'Register a camera');
  main.append(h('h1', {}, 'Cameras'), h('div.actions', {}, add), note, list);
  let cameras = [];

  const draw = () => {
    note.textContent = cameras.length ? '' : 'No cameras yet.';
    clear(list, cameras.map((cam) => cameraCard(cam, { reload, navigate })));
  };
  const reload = async () => {
    try {
      cameras = await listCameras();
      // A recent frame of each running camera (GET …/frame over STOMP: the node that runs it keeps one).
      await Promise.all(cameras.filter((c) => c.enabled && c.status?.state === 'running').map((c) =>
        request('GET', `${cameraPath(c.id)}/frame`).then((f) => frames.set(c.id, f), () => {})));
      for (const id of frames.keys()) if (!cameras.some((c) => c.id === id && c.enabled)) frames.delete(id);
      draw();
    } catch (err) {
      note.textContent = `Cameras could not be read: ${err.message}`;
      note.className = 'error';
    }
  };
  add.addEventListener('click', async () => {
    if (await cameraForm(null)) reload();
  });
  const unsubscribe = subscribe(cameraTopic(null), (event) => {
    if (event?.crop) {
      noteFace(event);
      draw();
    } else if (event?.type === 'camera.status') {
      reload();
    }
  });
  await reload();
  const timer = setInterval(reload, 5000);
  return () => { clearInterval(timer); unsubscribe(); };
}

function cameraCard(cam, { reload, navigate }) {
  const act = (label, action, cls = '') => h(`button${cls}`, { type: 'button', onclick: async (e) => {
    e.currentTarget.disabled = true;
    try {
      await action();
    } catch (err) {
      toast(`${label}: ${err.message}`, 'bad');
    }
    reload();
  } }, label);
  const face = latestFaces.get(cam.id);
  const frame = frames.get(cam.id);
  return h('section.card', { 'aria-label': `camera ${cam.id}`, dataset: { camera: cam.id } },
    h('h3', {}, cam.name ? `${cam.name} (${cam.id})` : cam.id),
    h('p.small.muted', {}, cam.url, cam.galleries.length ? ` · galleries: ${cam.galleries.join(', ')}` : ' · no galleries'),
    statusLines(cam),
    frame ? h('figure', {}, h('img.recent', { src: `data:image/jpeg;base64,${frame.image}`, alt: `recent frame of ${cam.id}` }),
              h('figcaption.small.muted', {}, `frame ${frame.index}, ${fmtAgo(frame.time)}`))
      : h('p.small.muted', {}, cam.enabled ? 'No recent frame yet.' : 'Stopped: no recent frame.'),
    face ? h('figure.row', {}, h('img.mini', { src: `data:image/jpeg;base64,${face.crop}`, alt: `latest face from ${cam.id}` }),
             h('figcaption.small.muted', {}, `latest face: ${face.label}, ${fmtAgo(face.time)}`))
      : null,
    h('div.actions', {},
      cam.enabled ? act('Stop', () => request('POST', `${cameraPath(cam.id)}/stop`))
        : act('Start', () => request('POST', `${cameraPath(cam.id)}/start`), '.primary'),
      h('button', { type: 'button', onclick: async () => { if (await cameraForm(cam)) reload(); } }, 'Edit'),
      h('a.button', { href: `/live?camera=${encodeURIComponent(cam.id)}`, 'data-link': true }, 'Live'),
      act('Delete', async () => {
        if (await confirmDialog(`Delete camera ${cam.id}?`, 'It stops and its settings are removed.')) {
          await request('DELETE', cameraPath(cam.id));
          toast(`Camera ${cam.id} deleted`);
        }
      }, '.danger')));
}

/** The register/edit form; resolves with the camera saved, or null. */
async function cameraForm(cam) {
  const s = { ...DEFAULTS, ...(cam || {}) };
  const input = (name, attrs) => h('input', { name, ...attrs });
  const check = (name, checked, text) => h('label.inline', {}, h('input', { type: 'checkbox', name, checked }), text);
  const [idF, id] = field('Camera id', input('id', { value: cam?.id || '', disabled: Boolean(cam), maxlength: 64,
    pattern: '[a-z0-9][a-z0-9_\\-]{0,63}', autocapitalize: 'off' }), 'Lower-case letters, digits, _ and -; it names the '
    + 'camera\'s topic. Empty: one is made up.');
  const [nameF, name] = field('Name', input('name', { value: s.name, maxlength: 200 }));
  const [urlF, url] = field('Source URL', input('url', { value: s.url, required: true, maxlength: 2000,
    placeholder: 'rtsp://… , http(s)://… , file:///path/clip.mp4' }),
  'rtsp(s)://, http(s)://, file:/// under the server\'s watcher.file_roots, or /dev/videoN where allowed.');
  const [transportF, transport] = field('RTSP transport', h('select', { name: 'rtsp_transport' },
    ['tcp', 'udp'].map((t) => h('option', { value: t, selected: s.rtsp_transport === t }, t))));
  const galleryBox = h('fieldset', {}, h('legend', {}, 'Galleries to match against'), h('p.muted.small', {}, 'Loading…'));
  const num = (label, key, attrs, hint) => field(label, input(key, { type: 'number', step: 'any',
    value: s[key] ?? '', ...attrs }), hint);
  const [fpsF, fps] = num('Analysed frames per second at most', 'max_fps', { min: 0.01, max: 60, required: true });
  const [pxF, px] = num('Smallest face matched (px)', 'min_face_px', { min: 0, required: true });
  const [qF, quality] = num('Lowest face quality matched (0-1)', 'min_quality', { min: 0, max: 1 }, 'Empty: the server\'s default.');
  const preset = typeof s.threshold === 'string' ? s.threshold : typeof s.threshold === 'number' ? 'custom' : '';
  const [presetF, thresholdPreset] = field('Threshold', h('select', { name: 'threshold_preset' },
    [['', 'server default'], ['strict', 'strict (fewest false matches)'], ['medium', 'medium'], ['low', 'low (most matches)'],
     ['custom', 'a fixed cosine…']].map(([v, t]) => h('option', { value: v, selected: preset === v }, t))));
  const [cosF, cosine] = num('Fixed cosine (-1 to 1)', 'threshold', { min: -1, max: 1,
    value: typeof s.threshold === 'number' ? s.threshold : '' });
  cosF.hidden = preset !== 'custom';
  thresholdPreset.addEventListener('change', () => { cosF.hidden = thresholdPreset.value !== 'custom'; });
  const [coolF, cooldown] = num('Cool-down per subject (s)', 'cooldown_s', { min: 0, required: true });
  const [unkF, unknownAfter] = num('Good frames before "unknown"', 'unknown_after_frames', { min: 1, step: 1, required: true });
  const attrBox = h('fieldset', {}, h('legend', {}, 'Attributes in events'),
    ATTRIBUTES.map((a) => check(`attr-${a}`, s.attributes.includes(a), a)));
  const options = h('fieldset', {}, h('legend', {}, 'Options'),
    check('loop', s.loop, 'files: start again at the end'), check('attach_crop', s.attach_crop, 'attach the face crop'),
    check('msgpack', s.msgpack, 'also publish msgpack copies'),
    cam ? null : check('enabled', true, 'start it now'));
  const [nodeF, node] = field('Watcher node', input('node', { maxlength: 200 }), 'Empty: the node that takes the request.');
  if (cam) nodeF.hidden = true;

  api('GET', '/galleries').then(({ galleries }) => {
    clear(galleryBox, h('legend', {}, 'Galleries to match against'), galleries.length
      ? galleries.map((g) => check(`gallery-${g.name}`, s.galleries.includes(g.name), g.name))
      : h('p.muted.small', {}, 'No galleries yet (Faces page): the camera will report every face as unknown.'));
    for (const g of s.galleries.filter((n) => !galleries.some((x) => x.name === n))) {
      galleryBox.append(check(`gallery-${g}`, true, `${g} (missing)`));
    }
  }).catch((err) => clear(galleryBox, h('legend', {}, 'Galleries'), status(err.message, 'error')));

  const controls = { id, name, url, rtsp_transport: transport, max_fps: fps, min_face_px: px, min_quality: quality,
                     threshold: cosine, cooldown_s: cooldown, unknown_after_frames: unknownAfter, node };
  const body = h('div', {}, idF, nameF, urlF, transportF, galleryBox, fpsF, pxF, qF, presetF, cosF, coolF, unkF, attrBox,
    options, nodeF);

  const read = (form) => {
    const errors = {};
    for (const control of Object.values(controls)) fieldError(control, '');
    const data = {
      name: name.value.trim(), url: url.value.trim(), rtsp_transport: transport.value,
      loop: form.elements.loop.checked, attach_crop: form.elements.attach_crop.checked,
      msgpack: form.elements.msgpack.checked,
      galleries: [...galleryBox.querySelectorAll('input:checked')].map((i) => i.name.slice('gallery-'.length)),
      attributes: ATTRIBUTES.filter((a) => form.elements[`attr-${a}`].checked),
      max_fps: Number(fps.value), min_face_px: Number(px.value), cooldown_s: Number(cooldown.value),
      unknown_after_frames: Number(unknownAfter.value),
      min_quality: quality.value === '' ? null : Number(quality.value),
      threshold: thresholdPreset.value === 'custom' ? Number(cosine.value) : thresholdPreset.value || null,
    };
    if (!cam) {
      if (id.value.trim()) data.id = id.value.trim();
      if (node.value.trim()) data.node = node.value.trim();
      data.enabled = form.elements.enabled.checked;
      if (data.id && !CAMERA_ID.test(data.id)) errors.id = 'lower-case letters, digits, _ and -, at most 64, starting with a letter or digit';
      if (data.node && !NODE_NAME.test(data.node)) errors.node = 'letters, digits, ., _ and -';
    }
    if (!data.url) errors.url = 'required';
    else if (!SOURCE.test(data.url)) errors.url = 'rtsp://, rtsps://, http(s)://, file:///… or /dev/videoN';
    if (!(data.max_fps > 0 && data.max_fps <= 60)) errors.max_fps = 'above 0, at most 60';
    if (!(data.min_face_px >= 0)) errors.min_face_px = '0 or more';
    if (data.min_quality !== null && !(data.min_quality >= 0 && data.min_quality <= 1)) errors.min_quality = 'between 0 and 1';
    if (thresholdPreset.value === 'custom' && !(cosine.value !== '' && data.threshold >= -1 && data.threshold <= 1)) {
      errors.threshold = 'a number between -1 and 1';
    }
    if (!(data.cooldown_s >= 0)) errors.cooldown_s = '0 or more';
    if (!(Number.isInteger(data.unknown_after_frames) && data.unknown_after_frames >= 1)) {
      errors.unknown_after_frames = 'a whole number, 1 or more';
    }
    if (data.galleries.length > 32) errors.galleries = 'at most 32 galleries';
    for (const [key, message] of Object.entries(errors)) {
      if (controls[key]) fieldError(controls[key], message);
    }
    const first = Object.keys(errors)[0];
    if (first) {
      controls[first]?.focus();
      throw new Error(`${first}: ${errors[first]}`);
    }
    return data;
  };

  return dialog(cam ? `Edit camera ${cam.id}` : 'Register a camera', body, {
    submitLabel: cam ? 'Save' : 'Register',
    onSubmit: async (form) => {
      const data = read(form);
      try {
        const saved = cam ? await request('PATCH', cameraPath(cam.id), data) : await request('POST', cameraPath(), data);
        toast(cam ? `Camera ${saved.id} saved` : `Camera ${saved.id} registered`);
        return saved;
      } catch (err) {
        if (err.param && controls[err.param]) {
          fieldError(controls[err.param], err.message);
          controls[err.param].focus();
        }
        throw err;
      }
    },
  });
}
