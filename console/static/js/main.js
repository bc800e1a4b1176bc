// The console's shell: routes between pages (history API), the header, sign-in state.
import { forgetImages } from './api.js';
import { disconnect, onBusState, busAvailable } from './bus.js';
import { clear, h } from './dom.js';
import { onSessionChange, session, signOut } from './session.js';

// path -> [module, title, needs a signed-in user]
const PAGES = {
  '/signin': ['./pages/signin.js', 'Sign in', false],
  '/live': ['./pages/live.js', 'Live', true],
  '/cameras': ['./pages/cameras.js', 'Cameras', true],
  '/faces': ['./pages/faces.js', 'Faces', true],
  '/test': ['./pages/test.js', 'Test a photo', true],
  '/unknown': ['./pages/unknown.js', 'Unknown people', true],
  '/history': ['./pages/history.js', 'History', true],
  '/reference': ['./pages/reference.js', 'API reference', false],
  '/reference/stomp': ['./pages/stomp_reference.js', 'STOMP topics and events', false],
};

const main = document.getElementById('main');
let cleanup = null;
let rendering = 0;

export function navigate(to, { replace = false } = {}) {
  if (replace) history.replaceState(null, '', to);
  else history.pushState(null, '', to);
  render();
}

async function render() {
  const ticket = ++rendering;
  let path = location.pathname;
  if (path === '/' || !PAGES[path]) path = session() ? '/live' : '/signin';
  if (path !== location.pathname) history.replaceState(null, '', path + location.search);
  const [module, title, needsUser] = PAGES[path];
  if (needsUser && !session()) {
    history.replaceState(null, '', `/signin?next=${encodeURIComponent(location.pathname + location.search)}`);
    return render();
  }
  if (typeof cleanup === 'function') cleanup();
  cleanup = null;
  document.title = `${title} · facewatch`;
  for (const a of document.querySelectorAll('#nav a')) {
    if (a.getAttribute('href') === path || (path.startsWith('/reference') && a.getAttribute('href') === '/reference')) {
      a.setAttribute('aria-current', 'page');
    } else {
      a.removeAttribute('aria-current');
    }
  }
  closeMenu();
  clear(main, h('p.muted', {}, 'Loading…'));
  try {
    const page = await import(module);
    if (ticket !== rendering) return;
    clear(main);
    cleanup = await page.render(main, { navigate, params: new URLSearchParams(location.search) });
  } catch (err) {
    if (ticket !== rendering) return;
    console.error(err); // a page that fails is an error of the console: the browser tests look for these
    clear(main, h('h1', {}, title), h('p.error', { role: 'alert' }, `This page could not be shown: ${err.message}`));
  }
  if (ticket === rendering && window.__focusMain) main.focus();
}

function closeMenu() {
  document.getElementById('nav').classList.remove('open');
  document.querySelector('.menu-toggle').setAttribute('aria-expanded', 'false');
}

function showWho() {
  const s = session();
  const who = document.getElementById('who');
  const out = document.getElementById('sign-out');
  if (!s) {
    who.textContent = '';
    out.hidden = true;
    document.getElementById('bus-state').hidden = true;
    return;
  }
  who.textContent = s.kind === 'key' ? `tenant ${s.me.tenant.slice(0, 8)} · API key ${s.me.key || ''}`
    : `tenant ${s.me.tenant.slice(0, 8)} · ${s.clientId}`;
  who.title = `tenant ${s.me.tenant}`;
  out.hidden = false;
}

// Links marked data-link route inside the page (other links, and modified clicks, behave as links do).
document.addEventListener('click', (e) => {
  const a = e.target.closest('a[data-link]');
  if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  e.preventDefault();
  window.__focusMain = true;
  navigate(a.getAttribute('href'));
});
window.addEventListener('popstate', render);

document.querySelector('.menu-toggle').addEventListener('click', (e) => {
  const nav = document.getElementById('nav');
  const open = nav.classList.toggle('open');
  e.currentTarget.setAttribute('aria-expanded', String(open));
});

document.getElementById('sign-out').addEventListener('click', async () => {
  await disconnect();
  forgetImages();
  signOut();
  navigate('/signin');
});

onSessionChange((s) => {
  showWho();
  if (!s && PAGES[location.pathname]?.[2]) {
    disconnect();
    navigate(`/signin?next=${encodeURIComponent(location.pathname)}`, { replace: true });
  }
});

let busSeen = false; // the indicator shows once a page has opened the live connection
onBusState((up) => {
  const el = document.getElementById('bus-state');
  busSeen ||= up;
  el.hidden = !busSeen || !session() || !busAvailable();
  el.className = `bus ${up ? 'up' : 'down'}`;
  el.textContent = up ? 'live' : 'offline';
});

showWho();
render();
