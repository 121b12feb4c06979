"""Old import path of `clio_hf.backends.vllm`; new code imports that.

This module *is* `clio_hf.backends.vllm` under its old name, so every name keeps working, patches included.
"""

import sys

from .backends import vllm

sys.modules[__name__] = vllm
