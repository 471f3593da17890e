"""Run moto's server with one request at a time.

moto_server is threaded, but moto's DynamoDB transactions are not atomic across threads:
two concurrent TransactWriteItems can both pass their conditions, and a cancelled one
restores a table snapshot that may undo another request's write. Real DynamoDB serialises
conditional writes per item, and Aula's uniqueness rules (one account per email, one post
per idempotency key) rely on that. Serving requests one by one gives the tests those
semantics; clients still send concurrently.

Usage: python moto_serial.py HOST PORT
"""

import sys

from werkzeug.serving import run_simple

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

try:  # the request handler moto_server itself uses (quieter logs, same routing)
    from moto.moto_server.threaded_moto_server import MotoRequestHandler as Handler
except ImportError:  # pragma: no cover - older/newer moto layouts
    Handler = None


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    app = DomainDispatcherApplication(create_backend_app)
    kwargs = {"threaded": False, "use_reloader": False}
    if Handler is not None:
        kwargs["request_handler"] = Handler
    run_simple(host, port, app, **kwargs)


if __name__ == "__main__":
    main()
