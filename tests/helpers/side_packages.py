"""Packages installed beside the venv, not in it: only the fresh interpreters that need them put them on their path.

torchao: transformers imports it whenever it is importable (its quantizer registry loads at `import
transformers.modeling_utils`), and torchao 0.18 on CPU torch 2.13 then logs four lines ("Failed to load
..._C_mxfp8...so", torch's pytree notice about Enum constants) in every process: before every one-line CLI error,
too. `make install` puts it in `<venv>/torchao-site` at the version constraints.txt pins.
"""

import sys
from pathlib import Path

TORCHAO_SITE = Path(sys.prefix) / "torchao-site"
