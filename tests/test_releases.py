"""The manifest of released code (custom_transformer/released_code.*): complete, consistent, and only ever growing.

If the first test fails, the shipped code changed without a release: bump CODE_VERSION in
custom_transformer/configuration_custom_transformer.py and run `.venv/bin/python tests/helpers/record_release.py`.
"""

import tarfile

from packaging.version import Version

from custom_transformer import releases
from custom_transformer.configuration_custom_transformer import CODE_VERSION
from custom_transformer.refresh import SHIPPED_CODE_FILES, code_files


def test_the_installed_code_is_exactly_the_recorded_release_of_its_code_version():
    installed = {name: releases.sha256(content) for name, content in code_files().items()}
    newest = releases.code_states()[-1]

    assert (newest.version, newest.is_release) == (CODE_VERSION, True)
    assert newest.files == installed, (
        "the shipped code changed without a new release: bump CODE_VERSION and run tests/helpers/record_release.py"
    )


def test_versions_only_grow_and_each_version_is_one_run_of_states():
    versions = [state.version for state in releases.code_states()]
    runs = list(dict.fromkeys(versions))

    assert runs == sorted(runs, key=Version), "a version recorded after a newer one"
    assert versions == sorted(versions, key=Version), "a version's states are not contiguous"
    assert [state.is_release for state in releases.code_states()] == [
        later != state for state, later in zip(versions, [*versions[1:], None])
    ], "the last state of each version, and only it, is the release"


def test_every_recorded_file_is_stored_once_under_its_own_digest():
    with tarfile.open(releases.CONTENTS, "r:xz") as archive:
        names = archive.getnames()
    recorded = {digest for state in releases.code_states() for digest in state.files.values()}

    assert sorted(names) == sorted(recorded), "stored contents are exactly the recorded files"
    assert all(releases.sha256(releases.released_file(digest)) == digest for digest in recorded)


def test_every_recorded_file_name_is_one_refresh_knows():
    """refresh removes a stale file only if it knows the name: every name a release shipped."""
    names = {name for state in releases.code_states() for name in state.files}

    assert names <= set(SHIPPED_CODE_FILES)
