"""Old import path of `clio_hf.backends.openai`; new code imports that.

This module *is* `clio_hf.backends.openai` under its old name, so every name keeps working, patches included.
"""

import sys

from .backends import openai

sys.modules[__name__] = openai
