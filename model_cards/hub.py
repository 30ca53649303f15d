"""Push a hub-ready folder to a Hugging Face Hub endpoint as one commit, and return the commit hash.

The folder is checked first (`check_checkpoint`): an incomplete checkpoint or a card without results
fails before any request is sent. The files then go up in a single `create_commit`, which the Hub
applies atomically, so a failed push leaves no partial checkpoint behind. (`upload_folder` would do the
same for a small folder, but with `hf_xet` installed it may split a large one into several commits.)
The endpoint is `HF_ENDPOINT` (read when this function runs) and the token comes from the usual places
(`token=`, `HF_TOKEN`, the saved login).
"""

import importlib
import os
from pathlib import Path

from huggingface_hub import CommitOperationAdd, HfApi, constants

from .checkpoint import check_checkpoint


class HubUnreachableError(ConnectionError):
    """The Hub endpoint could not be reached (offline mode, wrong HF_ENDPOINT, no network)."""


def push_to_hub(
    folder: str | Path,
    repo_id: str,
    *,
    revision: str | None = None,
    commit_message: str | None = None,
    private: bool | None = None,
    token: str | None = None,
    endpoint: str | None = None,
) -> str:
    """Upload `folder` to `repo_id` (created if needed) on branch `revision` (default main); return the commit sha.

    Load it back with `from_pretrained(repo_id, trust_remote_code=True, revision=<sha>)`.
    """
    folder = Path(folder)
    files = check_checkpoint(folder)
    if constants.HF_HUB_OFFLINE:
        raise HubUnreachableError("HF_HUB_OFFLINE=1 is set: unset it to push to the Hub. Nothing was uploaded.")
    api = HfApi(endpoint=endpoint or os.environ.get("HF_ENDPOINT") or None, token=token)
    operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=folder / name) for name in files]
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        if revision not in (None, constants.DEFAULT_REVISION):
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        commit = api.create_commit(
            repo_id,
            operations=operations,
            commit_message=commit_message or f"Upload {folder.name} with model_cards",
            revision=revision,
        )
    except _transport_errors() as error:
        raise HubUnreachableError(
            f"Cannot reach the Hub at {api.endpoint} ({type(error).__name__}: {error}). "
            "Check HF_ENDPOINT and the network. A commit is all-or-nothing: no partial checkpoint was written."
        ) from error
    return commit.oid


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Connection-level errors of the HTTP client huggingface_hub uses (httpx2 from 2.x, httpx in 1.x)."""
    errors: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for client in ("httpx2", "httpx"):
        try:
            errors.append(importlib.import_module(client).TransportError)
        except (ImportError, AttributeError):
            pass
    return tuple(errors)
