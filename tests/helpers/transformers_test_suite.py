"""Fetch transformers' own common tests, the step of `make test` that runs before pytest starts.

`ModelTesterMixin` (tests/test_modeling_common.py) and `ConfigTester` (tests/test_configuration_common.py) ship in
the transformers sdist on PyPI, not in the wheel. This script unpacks them once per transformers version into a
cache folder as the package `hf_tests`; a second run finds them there and needs no network:

    python tests/helpers/transformers_test_suite.py

The test modules read them through `load`, which never downloads: a missing file fails the test, naming this step.
The sibling modules these files import that the sdist lacks become stubs: we run `ModelTesterMixin` and test
generation ourselves in tests/test_modeling.py.
"""

import importlib
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from types import ModuleType

import transformers

CACHE = Path(os.environ.get("CT_CACHE", Path.home() / ".cache" / "custom_transformer"))
ROOT = CACHE / f"transformers-{transformers.__version__}-tests"
FILES = ("test_modeling_common.py", "test_configuration_common.py")
STUBS = {
    "exporters/test_export.py": "class ExportTesterMixin:\n    pass\n",
    "generation/test_utils.py": "class GenerationTesterMixin:\n    pass\n",
    # `ConfigTester.check_config_arguments_init`: PreTrainedConfig's common arguments, each away from its default.
    "utils/test_configuration_utils.py": (
        "config_common_kwargs = {\n"
        '    "return_dict": False,\n'
        '    "output_hidden_states": True,\n'
        '    "output_attentions": True,\n'
        '    "dtype": "float16",\n'
        '    "chunk_size_feed_forward": 5,\n'
        '    "architectures": ["CustomTransformerModel"],\n'
        '    "id2label": {0: "label"},\n'
        '    "label2id": {"label": 0},\n'
        '    "problem_type": "regression",\n'
        "}\n"
    ),
}


def is_fetched() -> bool:
    return all((ROOT / "hf_tests" / name).exists() for name in FILES)


def fetch() -> Path:
    """Unpack the common test files of the installed transformers into the cache, unless they are there already."""
    if is_fetched():
        return ROOT
    with tempfile.TemporaryDirectory() as download:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
             f"transformers=={transformers.__version__}", "-d", download],
            check=True,
        )  # fmt: skip
        (sdist,) = Path(download).glob("transformers-*.tar.gz")
        with tarfile.open(sdist) as archive:
            top = sdist.name[: -len(".tar.gz")]
            sources = {name: archive.extractfile(f"{top}/tests/{name}").read().decode() for name in FILES}
    package = ROOT / "hf_tests"
    for relative in ("", *{Path(stub).parent.as_posix() for stub in STUBS}):
        (package / relative).mkdir(parents=True, exist_ok=True)
        (package / relative / "__init__.py").touch()
    # The test files last: their presence marks a complete unpacking.
    for relative, text in {**STUBS, **sources}.items():
        (package / relative).write_text(text)
    return ROOT


def load(name: str) -> ModuleType:
    """`hf_tests.<name>`, one of transformers' common test files as fetched by this script (which it never runs)."""
    if not is_fetched():
        raise FileNotFoundError(
            f"transformers {transformers.__version__}'s common test files are not in {ROOT / 'hf_tests'}. "
            "Fetch them before pytest starts: run `make test` or `python tests/helpers/transformers_test_suite.py`."
        )
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return importlib.import_module(f"hf_tests.{name}")


if __name__ == "__main__":
    print(f"transformers' common tests: {fetch() / 'hf_tests'}")
