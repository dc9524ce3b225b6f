"""secpref-guard: keeps Alibaba Cloud RAM security preferences on the organisation's baseline."""

import logging

__version__ = "0.1.0"

# A library stays quiet until the CLI or a handler configures JSON logging.
logging.getLogger("secpref_guard").addHandler(logging.NullHandler())
