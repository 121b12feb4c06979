"""Old import path of `clio_hf.backends` (the `LLM` protocol, `load_llm`, `TransformersLLM`); new code imports that.

This module *is* `clio_hf.backends` under its old name, so every name it had keeps working and a test that patches
`clio_hf.llm.TransformersLLM` still reaches the `load_llm` that looks it up.
"""

import sys

from . import backends

sys.modules[__name__] = backends
