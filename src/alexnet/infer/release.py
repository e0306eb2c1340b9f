"""Release weights: a checkpoint stripped to what inference needs, named by its content hash.

The file is a weights `.safetensors` (see `alexnet.train.weights`): the state dict, the mean image
when the net subtracts one, and a header with model name, options, preprocessing, class names,
metrics and the training config, so it carries its own transforms. Its name is
`<model_name>-<first 8 hex of the file's sha256>.safetensors` (the convention of torch.hub
files), so a user can check the bytes against the name.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from alexnet.models.weights_file import save_weights
from alexnet.train.weights import load_weights


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def release(source: str | Path, out_dir: str | Path) -> Path:
    """Write the release file for a run directory or checkpoint into out_dir; return its path."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out {out_dir} is a file; release writes into a directory")
    model, pre, meta = load_weights(source)
    metrics: dict[str, Any] = dict(meta.get("metrics", {}))
    if meta.get("last_epoch"):
        metrics["last_epoch"] = meta["last_epoch"]
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = save_weights(
        out_dir / f".{model.model_name}.partial.safetensors",
        model,
        pre,
        metrics=metrics,
        config=meta.get("config"),
    )
    final = out_dir / f"{model.model_name}-{sha256_file(tmp)[:8]}.safetensors"
    tmp.replace(final)
    return final
