// What the STOMP side of the API is: connecting, the request/reply queue, the topics and their events.
import { stompPath } from '../bus.js';
import { h } from '../dom.js';
import { session } from '../session.js';

const code = (text) => h('code', {}, text);
const pre = (value) => h('pre', {}, typeof value === 'string' ? value : JSON.stringify(value, null, 2));

export function render(main) {
  const me = session()?.me;
  const tenant = me ? me.tenant : '<tenant id>';
  const ws = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}${stompPath() || '/stomp'}`;
  const topic = (suffix) => `/topic/tenant.${tenant}.${suffix}`;
  const row = (...cells) => h('tr', {}, cells.map((c) => h('td', {}, c)));
  main.append(
    h('h1', {}, 'STOMP topics and events'),
    h('p', {}, 'Everything the REST API does is also answered over STOMP, and cameras are managed over STOMP only. '
      + 'Watchers publish their events on topics; grouping, the repo and jobs announce their changes the same way.',
      me ? ' The topic names below are your tenant\'s.' : ' Sign in to see your tenant\'s topic names.'),

    h('h2', {}, 'Connecting'),
    h('p', {}, 'WebSocket: ', code(ws), stompPath() ? '' : ' (this server has no STOMP WebSocket: it uses an external broker)',
      ' (subprotocols v10.stomp, v11.stomp, v12.stomp). CONNECT with the API key as ', code('passcode'),
      ' (any login), or an access token as ', code('authorization: Bearer <token>'), '.'),

    h('h2', {}, 'Requests and replies: /queue/facewatch.api'),
    h('p', {}, 'SEND to ', code('/queue/facewatch.api'), ' with headers ', code('method'), ', ', code('path'),
      ' (query string allowed), ', code('x-api-key'), ' or ', code('authorization'), ', ', code('content-type'), ', ',
      code('reply-to: /temp-queue/<name>'), ' and ', code('correlation-id'), '; the reply has a ', code('status'),
      ' header and the same JSON body the REST route answers.'),
    h('div.table-wrap', {}, h('table', {}, h('thead', {}, h('tr', {}, h('th', {}, 'method and path'), h('th', {}, 'what'))),
      h('tbody', {},
        row(code('POST /api/v1/cameras'), 'register {id?, url, galleries, node?, enabled?, settings…}; 201'),
        row(code('GET /api/v1/cameras'), 'the cameras with their status'),
        row(code('GET /api/v1/cameras/{camera}'), 'one camera with its status'),
        row(code('PATCH /api/v1/cameras/{camera}'), 'change settings (its worker restarts with them)'),
        row(code('POST /api/v1/cameras/{camera}/start'), 'run it (remembered across restarts); …/stop stops it'),
        row(code('GET /api/v1/cameras/{camera}/status'), 'state, reason, worker, stats (analysed, decoded, dropped, faces…)'),
        row(code('GET /api/v1/cameras/{camera}/frame'), 'a recent analysed frame {camera, time, index, image: base64 JPEG} '
          + '(from the node that runs the camera)'),
        row(code('DELETE /api/v1/cameras/{camera}'), 'stop and remove'),
        row('every REST route', h('span', {}, 'the same paths as the ', h('a', { href: '/reference', 'data-link': true }, 'REST reference')))))),

    h('h2', {}, 'Topics you may subscribe to'),
    h('div.table-wrap', {}, h('table', {}, h('thead', {}, h('tr', {}, h('th', {}, 'topic'), h('th', {}, 'what'))),
      h('tbody', {},
        row(code(topic('watcher.<camera>')), 'one camera\'s events (JSON); it may be subscribed to before the camera exists'),
        row(code(topic('watcher.*')), 'every camera of the tenant, present and future'),
        row(code(topic('repo')), 'repo changes: face.added, subject.removed, … (no embeddings)'),
        row(code(topic('grouping')), 'grouping changes: group.created, group.grown, group.merged, group.changed, '
          + 'group.ignored, group.restored, group.promoted, group.deleted'),
        row(code(topic('#')), 'all of the above'),
        row(code('/topic/jobs.<job id>'), 'a job\'s progress: {type: "job.progress", job, kind, status, done, total, result}')))),
    h('p.small.muted', {}, 'Anything else (other tenants, other wildcards, publishing on topics) is refused with an ERROR, '
      + 'which closes the connection, as STOMP requires.'),

    h('h2', {}, 'Camera events'),
    h('h3', {}, 'face.recognized'),
    h('p', {}, 'Every camera event has an id (deduplicate redeliveries by it), a time, and run + seq: seq counts '
      + 'the camera\'s events 1, 2, 3… within one run of its worker, so a jump in seq is a gap and a new run a restart '
      + 'or a move to another node. Boxes are in pixels of the frame whose width and height the event\'s frame gives.'),
    pre({ type: 'face.recognized', id: '<event id>', time: 1795920000.16, camera: 'stage', run: '<run id>', seq: 12, track: 4,
          subject: { id: 'lin', name: 'Lin-Manuel Miranda', gallery: 'hamilton', pk: '…' },
          similarity: 0.4512, threshold: 0.4123, margin: 0.21, runner_up: { subject: { id: '…' }, similarity: 0.24 },
          decision: { matched: true, reason: 'matched', rate: 0.0005, '…': '…' },
          box: { x_min: 146, y_min: 53, x_max: 228, y_max: 165 },
          frame: { index: 311, stream_time: 12.44, wall_time: 1795920000.1, width: 1280, height: 720 },
          quality: 0.76, shots: 2, crop: '<base64 JPEG>', attributes: { age: 41.2 } }),
    h('h3', {}, 'face.unknown'),
    pre({ type: 'face.unknown', camera: 'stage', track: 7, best_similarity: 0.12, embedding: '<base64 float32>',
          model_id: '…', group: null, crop: '<base64 JPEG>' }),
    h('h3', {}, 'track.ended'),
    pre({ type: 'track.ended', camera: 'stage', track: 4, first_seen: 0, last_seen: 0, shots: 3, subject: null,
          announced: false, unknown_sent: false }),
    h('h3', {}, 'camera.status'),
    pre({ type: 'camera.status', camera: 'stage', state: 'reconnecting', attempt: 2, reason: '…', pid: 1234 }),
    h('p', {}, 'States: starting, running, reconnecting, failed, restarting, stopped, node_down (taken_over_by: the node that runs it now).'),

    h('h2', {}, 'Grouping events'),
    pre({ type: 'group.grown', group: '<group id>', camera: 'stage', track: 7 }),
  );
}
