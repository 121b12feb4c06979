"""The `sentence-transformers` embedder backend (the default `minilm-l6` and `sentence-transformers:<path-or-id>`).

`sentence_transformers` is imported when an embedder is made, so importing this module stays cheap. Inside this package
`from sentence_transformers import ...` still means the library: Python 3 imports are absolute.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


class SentenceTransformerEmbedder:
    def __init__(self, path: str, *, model_id: str | None = None, batch_size: int = 64):
        from sentence_transformers import SentenceTransformer

        self.model_id = model_id or path
        self.batch_size = batch_size
        self.model = SentenceTransformer(path, local_files_only=Path(path).exists())

    def encode(self, texts):
        return self.model.encode(list(texts), batch_size=self.batch_size, convert_to_numpy=True, show_progress_bar=False).astype(np.float32)
