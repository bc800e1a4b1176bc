// Small DOM helpers: building elements, dialogs, toasts, formatting. No framework.

/** h('button.primary', {onclick, type: 'button'}, 'Save') -> an element. Children: strings, nodes, arrays, null. */
export function h(spec, attrs = {}, ...children) {
  const [tag, ...classes] = spec.split('.');
  const el = document.createElement(tag || 'div');
  if (classes.length) el.className = classes.join(' ');
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
    else if (key === 'class') el.className = [el.className, value].filter(Boolean).join(' ');
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key === 'value' || key === 'checked' || key === 'selected') el[key] = value;
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  append(el, children);
  return el;
}

/** Appends children (strings, nodes, arrays; null and false are skipped, unlike Element.append). */
export function add(el, ...children) {
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/**
 * For a panel that redraws after awaiting the server: `const turn = latestOnly();` once, then in each
 * redraw `const mine = turn();` and, after every await, `if (!mine()) return;`. Clicks and live updates
 * start redraws that overlap; only the latest one draws, or the panel would show both.
 */
export function latestOnly() {
  let current = 0;
  return () => {
    const mine = ++current;
    return () => mine === current;
  };
}

let uid = 0;
/** A unique id for label/field pairs. */
export const nextId = (prefix = 'f') => `${prefix}-${++uid}`;

/** A labelled field: returns [wrapper, control]. */
export function field(labelText, control, hint) {
  control.id ||= nextId();
  const hintEl = hint ? h('p.hint', { id: `${control.id}-hint` }, hint) : null;
  if (hintEl) control.setAttribute('aria-describedby', hintEl.id);
  const error = h('p.field-error', { id: `${control.id}-error`, hidden: true });
  const wrapper = h('div.field', {}, h('label', { for: control.id }, labelText), control, hintEl, error);
  control.addEventListener('input', () => fieldError(control, '')); // a corrected value loses its complaint
  return [wrapper, control];
}

/** Shows `message` under a field made by field() (or clears it). */
export function fieldError(control, message) {
  const error = document.getElementById(`${control.id}-error`);
  control.setAttribute('aria-invalid', message ? 'true' : 'false');
  if (error) {
    error.textContent = message || '';
    error.hidden = !message;
  }
}

export function toast(message, kind = '') {
  const box = document.getElementById('toasts');
  const el = h(`div.toast${kind ? '.' + kind : ''}`, {}, message);
  box.append(el);
  setTimeout(() => el.remove(), kind === 'bad' ? 8000 : 4000);
}

/** A modal <dialog> with `content`; resolves with what `onSubmit` returns, or null when cancelled. */
export function dialog(title, content, { submitLabel = 'OK', onSubmit = () => true, danger = false } = {}) {
  return new Promise((resolve) => {
    const error = h('p.error', { role: 'alert', hidden: true });
    const submit = h(`button.${danger ? 'danger' : 'primary'}`, { type: 'submit' }, submitLabel);
    const cancel = h('button', { type: 'button' }, 'Cancel');
    // novalidate: the dialog's own checks (the API's rules) explain each field in words, next to it.
    const form = h('form', { method: 'dialog', novalidate: true }, h('h2', {}, title), content, error, h('div.actions', {}, submit, cancel));
    const dlg = h('dialog', { 'aria-label': title }, form);
    let settled = false;
    const finish = (value) => {
      if (settled) return;
      settled = true;
      dlg.close();
      dlg.remove();
      resolve(value);
    };
    cancel.addEventListener('click', () => finish(null));
    dlg.addEventListener('cancel', (e) => { e.preventDefault(); finish(null); });
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      submit.disabled = true;
      error.hidden = true;
      try {
        const value = await onSubmit(form);
        if (value !== false && value !== undefined) finish(value);
      } catch (err) {
        error.textContent = err.message || String(err);
        error.hidden = false;
      } finally {
        submit.disabled = false;
      }
    });
    document.body.append(dlg);
    dlg.showModal();
    (form.querySelector('input, select, textarea') || submit).focus();
  });
}

export const confirmDialog = (title, text, label = 'Delete') =>
  dialog(title, h('p', {}, text), { submitLabel: label, danger: true, onSubmit: () => true });

export function fmtTime(seconds) {
  if (seconds === null || seconds === undefined) return '—';
  return new Date(seconds * 1000).toLocaleString();
}

export function fmtAgo(seconds) {
  if (!seconds) return '—';
  const s = Math.max(0, Date.now() / 1000 - seconds);
  if (s < 60) return `${Math.round(s)} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return fmtTime(seconds);
}

export const fmtNum = (x, digits = 3) => (typeof x === 'number' ? x.toFixed(digits) : '—');

/** A page heading and a busy/empty/error line to reuse. */
export function status(text, kind = 'muted') {
  return h(`p.${kind}`, { role: kind === 'error' ? 'alert' : undefined }, text);
}

/** Reads a File/Blob as base64 (no data: prefix). */
export function toBase64(blob) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).split(',', 2)[1]);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(blob);
  });
}

export function base64ToBlob(b64, type = 'image/jpeg') {
  const bytes = atob(b64);
  const buf = new Uint8Array(bytes.length);
  for (let i = 0; i < bytes.length; i++) buf[i] = bytes.charCodeAt(i);
  return new Blob([buf], { type });
}
