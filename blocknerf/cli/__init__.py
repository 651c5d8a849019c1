"""The ``blocknerf`` command line: argument parsing lives here and nowhere else.

One module per subcommand (``add_arguments`` + ``run``), ``main`` dispatches; ``settings`` resolves
defaults < a store's recorded settings < ``--config`` < flags. Nothing outside this package imports
it (``blocknerf demo`` hands ``main`` to the demo instead).
"""

from blocknerf.lazy import lazy_exports

_EXPORTS = {"main": "blocknerf.cli.main", "Settings": "blocknerf.cli.settings"}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
