"""`lstmserve serve`: settings from flags and LSTMSERVE_* variables, then run the server."""

from __future__ import annotations

import argparse

from . import settings as settings_module


def add_serve(commands) -> None:
    parser = commands.add_parser(
        "serve",
        help="serve a model repository over gRPC",
        description="Serve every model version in a repository over gRPC (lstmserve.v1 and KServe v2 on "
        "one port, health, reflection). Each flag can also be set by its LSTMSERVE_* environment "
        "variable. Limits and failure behaviour: docs/limits.md.",
    )
    settings_module.add_arguments(parser)
    parser.set_defaults(run=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    import logging

    settings = settings_module.from_arguments(args)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if settings.workers > 1:
        from .workers import run_workers

        return run_workers(settings)
    from .server import run

    return run(settings)
