"""Stack supervision: the embedded Temporal dev server, the gateway, the twins (in process or
in their own process), the workers, free ports, stopping children by id, and shutdown.

Importable without the CLI (`starter`) or typer: tests and benches start the stack from here.
"""

from stack.foreground import (
    print_urls,
    run_doctor,
    run_until_signal,
    serve_gateway,
    stop_on_signal,
)
from stack.processes import free_port, serve, serve_twins, start_twins_process, stop_process
from stack.running import Stack, running_stack

__all__ = [
    "Stack",
    "free_port",
    "print_urls",
    "run_doctor",
    "run_until_signal",
    "running_stack",
    "serve",
    "serve_gateway",
    "serve_twins",
    "start_twins_process",
    "stop_on_signal",
    "stop_process",
]
