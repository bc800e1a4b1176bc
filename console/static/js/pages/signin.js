// Sign in with a tenant's client id and secret (tokens, refreshed) or with an API key.
import { field, h } from '../dom.js';
import { session, signInWithClient, signInWithKey } from '../session.js';

export function render(main, { navigate, params }) {
  const next = params.get('next');
  const go = () => navigate(next && next.startsWith('/') && !next.startsWith('//') ? next : '/live', { replace: true });
  if (session()) return go();

  const [idField, clientId] = field('Client id', h('input', { name: 'client_id', autocomplete: 'username', required: true }));
  const [secretField, secret] = field('Client secret', h('input', { name: 'client_secret', type: 'password',
                                                                     autocomplete: 'current-password', required: true }));
  const clientError = h('p.error', { role: 'alert', hidden: true });
  const clientForm = h('form.panel', { 'aria-labelledby': 'signin-client' },
    h('h2', { id: 'signin-client' }, 'With a client\'s credentials'),
    h('p.hint', {}, 'From "facewatch tenants create": the console signs in for an hour at a time and renews it.'),
    idField, secretField, clientError,
    h('div.actions', {}, h('button.primary', { type: 'submit' }, 'Sign in')));

  const [keyField, apiKey] = field('API key', h('input', { name: 'api_key', type: 'password', autocomplete: 'off',
                                                             required: true, placeholder: 'fwk_…' }));
  const keyError = h('p.error', { role: 'alert', hidden: true });
  const keyForm = h('form.panel', { 'aria-labelledby': 'signin-key' },
    h('h2', { id: 'signin-key' }, 'With a key'),
    h('p.hint', {}, 'A full key manages everything; a read key only looks.'),
    keyField, keyError,
    h('div.actions', {}, h('button.primary', { type: 'submit' }, 'Sign in with the key')));

  const submit = (form, error, action) => form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const button = form.querySelector('button[type="submit"]');
    button.disabled = true;
    error.hidden = true;
    try {
      await action();
      go();
    } catch (err) {
      error.textContent = `Not signed in: ${err.message}`;
      error.hidden = false;
    } finally {
      button.disabled = false;
    }
  });
  submit(clientForm, clientError, () => signInWithClient(clientId.value.trim(), secret.value));
  submit(keyForm, keyError, () => signInWithKey(apiKey.value.trim()));

  main.append(h('div.signin', {}, h('h1', {}, 'Sign in to facewatch'), clientForm, keyForm,
    h('p.small.muted', {}, 'Credentials stay in this browser tab and go to this server only. ',
      h('a', { href: '/reference', 'data-link': true }, 'API reference'))));
  clientId.focus();
}
