// The REST API's OpenAPI document rendered by Swagger UI (vendored, served from /assets/vendor). Signed
// in, "Try it out" sends the console's credential in its header.
import { h } from '../dom.js';
import { authHeaders } from '../session.js';

let loading = null;

function loadSwagger() {
  loading ||= new Promise((resolve, reject) => {
    if (!document.querySelector('link[data-swagger]')) {
      document.head.append(h('link', { rel: 'stylesheet', href: '/assets/vendor/swagger-ui.css', 'data-swagger': true }));
    }
    const script = h('script', { src: '/assets/vendor/swagger-ui-bundle.js' });
    script.onload = () => resolve(window.SwaggerUIBundle);
    script.onerror = () => { loading = null; reject(new Error('Swagger UI (vendor/swagger-ui-bundle.js) is missing: run scripts/setup.sh')); };
    document.head.append(script);
  });
  return loading;
}

export async function render(main) {
  const mount = h('div.swagger', { id: 'swagger' });
  main.append(h('h1', {}, 'API reference'),
    h('p', {}, 'The REST API under /api/v1, from the server\'s own OpenAPI document (',
      h('a', { href: '/api/v1/openapi.json' }, 'openapi.json'), '). Cameras are served over STOMP only: see ',
      h('a', { href: '/reference/stomp', 'data-link': true }, 'STOMP topics and events'), '.'),
    mount);
  const SwaggerUIBundle = await loadSwagger();
  SwaggerUIBundle({
    url: '/api/v1/openapi.json',
    domNode: mount,
    deepLinking: false,
    validatorUrl: null, // nothing is sent elsewhere
    presets: [SwaggerUIBundle.presets.apis],
    layout: 'BaseLayout',
    defaultModelsExpandDepth: 0,
    requestInterceptor: (req) => {
      for (const [k, v] of Object.entries(authHeaders())) req.headers[k] = v;
      return req;
    },
  });
  return undefined;
}
