"""Old import path of `clio_hf.backends.chat_template`; new code imports that.

This module *is* `clio_hf.backends.chat_template` under its old name, so every name keeps working, patches included.
"""

import sys

from .backends import chat_template

sys.modules[__name__] = chat_template
