"""Command line: regenerate a card, export a hub-ready folder, push one.

python -m model_cards [card] --run-dir DIR [--output-dir DIR] [--hub-model-id ORG/NAME]
python -m model_cards export --run-dir DIR --to DIR [--overwrite] [--max-shard-size 5GB]
                             [--push-to-hub --hub-model-id ORG/NAME [--revision B] [--commit-message M] [--private]]
python -m model_cards push --folder DIR --hub-model-id ORG/NAME [--revision B] [--commit-message M] [--private]
"""

import argparse
import sys

from huggingface_hub.errors import HfHubHTTPError

from .card import write_model_card
from .checkpoint import IncompleteCheckpointError
from .export import export_run
from .hub import HubUnreachableError, push_to_hub
from .run import IncompleteRunError

COMMANDS = ("card", "export", "push")
EXPECTED_ERRORS = (
    IncompleteRunError,
    IncompleteCheckpointError,
    HubUnreachableError,
    HfHubHTTPError,
    OSError,
    ValueError,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m model_cards", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    card = commands.add_parser("card", help="write README.md and training_curves.png for a run (the default)")
    card.add_argument("--run-dir", required=True, help="the training run's output folder")
    card.add_argument("--output-dir", help="where to write the card (default: the run folder)")
    card.add_argument("--hub-model-id", help="repo id the card's load snippet uses (default: the output folder)")

    export = commands.add_parser("export", help="write a self-contained hub-ready folder (and optionally push it)")
    export.add_argument("--run-dir", required=True)
    export.add_argument("--to", required=True, help="the folder to create")
    export.add_argument("--overwrite", action="store_true", help="replace a non-empty destination")
    export.add_argument("--max-shard-size", default="5GB", help="safetensors shard size, e.g. 2GB (default 5GB)")
    export.add_argument("--push-to-hub", action="store_true", help="push the exported folder (needs --hub-model-id)")
    _add_push_arguments(export, required=False)

    push = commands.add_parser("push", help="push an exported folder to the Hub (HF_ENDPOINT, HF_TOKEN)")
    push.add_argument("--folder", required=True)
    _add_push_arguments(push, required=True)
    return parser


def _add_push_arguments(parser: argparse.ArgumentParser, required: bool) -> None:
    parser.add_argument("--hub-model-id", required=required, help="org/name on the Hub")
    parser.add_argument("--revision", help="branch to commit to (default: main; created if missing)")
    parser.add_argument("--commit-message")
    parser.add_argument("--private", action="store_true", help="create the repo private")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in (*COMMANDS, "-h", "--help"):
        argv = ["card", *argv]  # `python -m model_cards --run-dir DIR` writes a card
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "export" and args.push_to_hub and not args.hub_model_id:
        parser.error("--push-to-hub needs --hub-model-id ORG/NAME")
    try:
        if args.command == "card":
            print(write_model_card(args.run_dir, args.output_dir, repo_id=args.hub_model_id))
        elif args.command == "export":
            folder = export_run(
                args.run_dir,
                args.to,
                overwrite=args.overwrite,
                max_shard_size=args.max_shard_size,
                repo_id=args.hub_model_id,
            )
            print(folder)
            if args.push_to_hub:
                _push(folder, args)
        else:
            _push(args.folder, args)
    except EXPECTED_ERRORS as error:
        sys.exit(f"error: {error}")


def _push(folder, args: argparse.Namespace) -> None:
    sha = push_to_hub(
        folder,
        args.hub_model_id,
        revision=args.revision,
        commit_message=args.commit_message,
        private=args.private or None,
    )
    print(f"pushed {args.hub_model_id} at commit {sha}")
    print(f'load: from_pretrained("{args.hub_model_id}", trust_remote_code=True, revision="{sha}")')


if __name__ == "__main__":
    main()
