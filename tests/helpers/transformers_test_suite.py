"""Fetch transformers' own `tests/test_modeling_common.py` (it ships in the sdist on PyPI, not in the wheel).

The file is unpacked once per transformers version into a cache folder as the package `hf_tests`.
Its two sibling imports that the sdist lacks (export and generation tester mixins) become empty mixins:
we run `ModelTesterMixin`, and test generation ourselves in tests/test_modeling.py.
"""

import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import transformers

CACHE = Path(os.environ.get("CT_CACHE", Path.home() / ".cache" / "custom_transformer"))
STUBS = {
    "exporters/test_export.py": "class ExportTesterMixin:\n    pass\n",
    "generation/test_utils.py": "class GenerationTesterMixin:\n    pass\n",
}


def ensure_hf_tests_importable() -> Path:
    """Put a folder holding the `hf_tests` package (for this transformers version) on sys.path."""
    root = CACHE / f"transformers-{transformers.__version__}-tests"
    if not (root / "hf_tests" / "test_modeling_common.py").exists():
        with tempfile.TemporaryDirectory() as download:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                 f"transformers=={transformers.__version__}", "-d", download],
                check=True,
            )  # fmt: skip
            (sdist,) = Path(download).glob("transformers-*.tar.gz")
            with tarfile.open(sdist) as archive:
                member = archive.getmember(f"{sdist.name[: -len('.tar.gz')]}/tests/test_modeling_common.py")
                source = archive.extractfile(member).read()
        package = root / "hf_tests"
        for folder in (package, package / "exporters", package / "generation"):
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "__init__.py").touch()
        # The main file last: its presence marks a complete unpacking.
        for relative, text in {**STUBS, "test_modeling_common.py": source.decode()}.items():
            (package / relative).write_text(text)
    sys.path.insert(0, str(root))
    return root
