"""Read a Hub repo pinned to one commit, every failure a one-line `HubRepoError`: what `refresh` and `verify` share.

The endpoint and token come from HF_ENDPOINT and HF_TOKEN (or the saved login). The branch (or commit) asked for is
resolved once; every listing and download afterwards names that commit, so the files read belong together even if
someone pushes meanwhile.
"""

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

CONFIG_NAME = "config.json"


class HubRepoError(ValueError):
    """The repo cannot be read as a checkpoint; the message says why and what to check."""


@dataclass
class RepoSnapshot:
    api: object  # huggingface_hub.HfApi
    repo_id: str
    where: str  # repo@revision, for messages
    commit: str
    files: dict[str, str]  # every file's path -> its git blob id

    def read(self, path: str) -> bytes:
        with hub_errors(self.repo_id, self.where, self.api.endpoint, self.commit, path):
            return Path(self.api.hf_hub_download(self.repo_id, path, revision=self.commit)).read_bytes()

    def config(self) -> dict:
        try:
            return json.loads(self.read(CONFIG_NAME))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise HubRepoError(f"{self.where}/{CONFIG_NAME} is not valid JSON ({error}).") from None


def open_repo(repo_id: str, revision: str | None, *, verb: str) -> RepoSnapshot:
    """The repo's files at `revision` (default: main), pinned to the commit it resolves to. `verb` ("refresh",
    "verify") completes the messages."""
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.hf_api import RepoFile
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        raise HubRepoError(f"{repo_id} is neither a local folder nor a Hub repo id (org/name).") from None
    if constants.HF_HUB_OFFLINE:
        raise HubRepoError(
            f"{repo_id} is not a local folder, and HF_HUB_OFFLINE=1 forbids asking the Hub for it: "
            f"unset it to {verb} a Hub repo."
        )
    api = HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None)
    where = f"{repo_id}@{revision or constants.DEFAULT_REVISION}"
    with hub_errors(repo_id, where, api.endpoint, revision):
        commit = api.model_info(repo_id, revision=revision).sha
        files = {
            entry.path: entry.blob_id
            for entry in api.list_repo_tree(repo_id, revision=commit, recursive=True)
            if isinstance(entry, RepoFile)
        }
    if CONFIG_NAME not in files:
        raise HubRepoError(f"{where} has no {CONFIG_NAME}, so it is not a saved checkpoint: check the repo id.")
    return RepoSnapshot(api, repo_id, where, commit, files)


@contextlib.contextmanager
def hub_errors(repo_id: str, where: str, endpoint: str, revision: str | None, path: str = CONFIG_NAME):
    """Turn what the Hub client raises into one `HubRepoError` line naming the repo and what to check."""
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        yield
    except RepositoryNotFoundError:
        raise HubRepoError(
            f"{repo_id} is neither a local folder nor a repo reachable at {endpoint} "
            "(check the path, the repo id, HF_ENDPOINT and HF_TOKEN)."
        ) from None
    except RevisionNotFoundError:
        raise HubRepoError(f"{repo_id} has no revision {revision!r} at {endpoint}.") from None
    except EntryNotFoundError:
        raise HubRepoError(f"{where} has no {path}, so it is not a saved checkpoint: check the repo id.") from None
    except HfHubHTTPError as error:  # any other answer of the Hub: server errors, refused access
        raise HubRepoError(f"the Hub at {endpoint} refused to read {where} ({' '.join(str(error).split())}).") from None
    except transport_errors() as error:
        raise HubRepoError(
            f"{repo_id} is not a local folder, and the Hub at {endpoint} cannot be reached "
            f"({type(error).__name__}: {error}); check HF_ENDPOINT and the network."
        ) from None


def transport_errors() -> tuple[type[BaseException], ...]:
    """Connection-level errors of the HTTP client huggingface_hub uses (httpx2 from 2.x, httpx in 1.x)."""
    errors: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for client in ("httpx2", "httpx"):
        with contextlib.suppress(ImportError, AttributeError):
            errors.append(__import__(client).TransportError)
    return tuple(errors)
