"""``python -m blocknerf`` runs the ``blocknerf`` command."""

import sys

from blocknerf.cli.main import main

sys.exit(main())
