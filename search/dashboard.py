"""Open optuna-dashboard on a study database: `python -m search.dashboard`.

A thin wrapper over the installed optuna-dashboard with the project's defaults. Unlike the
plain `optuna-dashboard` command it refuses a missing database instead of creating an empty one.
"""

import argparse
import errno
import sys
from collections.abc import Sequence
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from search.errors import UsageError
from search.flags import ArgumentParser

PROG = "python -m search.dashboard"


class ThreadedWSGIServer(ThreadingMixIn, WSGIServer):
    """One thread per request, as the optuna-dashboard command serves: the page polls the API
    while other requests are in flight."""

    daemon_threads = True


class QuietRequestHandler(WSGIRequestHandler):
    """No line per HTTP request: the page polls the API every few seconds, which would bury the
    terminal in "GET /api/studies/1 200" lines."""

    def log_message(self, format: str, *args) -> None:
        pass


def port_number(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number from 1 to 65535, got {text!r}")
    return int(text)


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog=PROG,
        description="Serve optuna-dashboard on a study database: trials, importances, the "
        "report's note and learning curves (run python -m search.report first for those).",
    )
    add = parser.add_argument
    add(
        "--storage",
        default="sqlite:///studies/cifar.db",
        help="study database URL (sqlite:///file.db or postgresql://user:pw@host/db)",
    )
    add("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    add("--port", type=port_number, default=8080, help="port to listen on")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Imported once the flags are read: optuna-dashboard takes seconds to import (scikit-learn
    # for its importances), and --help or a wrong flag needs none of it.
    import optuna_dashboard

    from search.storage import open_storage

    try:
        storage = open_storage(args.storage, create=False)
        server = make_server(
            args.host,
            args.port,
            optuna_dashboard.wsgi(storage),
            server_class=ThreadedWSGIServer,
            handler_class=QuietRequestHandler,
        )
    except UsageError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        # In use or privileged: the port's fault; anything else (an unknown name, an address
        # of another machine) is the host's.
        if error.errno in (errno.EADDRINUSE, errno.EACCES):
            fix = "pick another --port"
        else:
            fix = "use an address of this machine for --host (127.0.0.1, or 0.0.0.0 for all)"
        print(
            f"{PROG}: error: cannot listen on {args.host}:{args.port} ({error.strerror}): {fix}",
            file=sys.stderr,
        )
        return 2
    print(f"optuna-dashboard on http://{args.host}:{args.port}/ (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
