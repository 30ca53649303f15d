"""Importing this makes `import custom_transformer` fail, as on a machine where the package is not installed.

The one import blocker of the project. A script that must prove a checkpoint brings its own code
(`trust_remote_code=True`) imports it before anything else: training/load_without_package.py (the demo's last
stage) and the scripts the tests run in fresh interpreters (tests/helpers/*.py load this file by path with `runpy`).
"""

import importlib.abc
import sys

BLOCKED = "custom_transformer"


class BlockPackage(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == BLOCKED or name.startswith(BLOCKED + "."):
            raise ImportError(f"{name} is blocked: this process simulates a machine without the package")
        return None


if not any(isinstance(finder, BlockPackage) for finder in sys.meta_path):
    sys.meta_path.insert(0, BlockPackage())
