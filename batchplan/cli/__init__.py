"""The command line: thin click commands that parse arguments, make one
library call and render its result. One module per command group
(``compare``, ``files``, ``batches``, ``reconcile``); ``_options`` holds what
they share; ``main`` builds the group and is the single place where a
library failure becomes a one-line message and an exit code.
"""

from batchplan.cli.main import cli, main

__all__ = ["cli", "main"]
