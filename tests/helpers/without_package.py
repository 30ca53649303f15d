"""Importing this makes `import custom_transformer` fail, as on a machine where the package is not installed.

The scripts that a test runs in a fresh interpreter import it before anything else, so a checkpoint can only
bring its model through the code saved inside it (`trust_remote_code=True`). Scripts in this folder import it
directly (their folder is on `sys.path`); `python -c` snippets put this folder on `sys.path` first.
"""

import importlib.abc
import sys

BLOCKED = "custom_transformer"


class BlockPackage(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == BLOCKED or name.startswith(BLOCKED + "."):
            raise ImportError(f"{name} is blocked: this process simulates a machine without the package")
        return None


sys.meta_path.insert(0, BlockPackage())
