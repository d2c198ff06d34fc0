"""Runs moto's EC2 server with floatip's patch on a free loopback port.

Prints `MOTO_PORT=<port>` as its first stdout line once it accepts connections. Exits when its
stdin reaches end of file: the lab holds the other end, so moto never outlives the lab, even when
the lab is killed with SIGKILL and cannot clean up.
"""

import logging
import os
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import floatip_moto_patch  # noqa: E402,F401  (patches moto on import)
from moto.moto_server.werkzeug_app import (  # noqa: E402
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server  # noqa: E402


def exit_with_parent():
    sys.stdin.buffer.read()
    os._exit(0)


def serialized(app):
    # moto's backends are plain dicts without locks; requests run one at a time so concurrent
    # callers (two controllers, say) see a consistent EC2 rather than Python races.
    lock = threading.Lock()

    def handle(environ, start_response):
        with lock:
            return list(app(environ, start_response))

    return handle


def main():
    if os.environ.get("LAB_MOTO_LOG") != "1":
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
    threading.Thread(target=exit_with_parent, daemon=True).start()
    app = serialized(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler)
    os.environ["MOTO_PORT"] = str(server.server_port)
    print(f"MOTO_PORT={server.server_port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
