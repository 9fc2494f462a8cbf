"""``python -m llm_gateway`` is the ``llm-gateway`` command.

The cyclic garbage collector is off from the very first import: start-up only makes objects that
live as long as the process, and ``serve`` turns it back on once they are frozen (``cli.main``).
"""

import gc

gc.disable()

from llm_gateway.cli import main  # noqa: E402 - after the collector is off

raise SystemExit(main())
