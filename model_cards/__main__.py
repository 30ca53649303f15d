"""Command line: regenerate a card, export a hub-ready folder, push one.

python -m model_cards [card] --run_dir DIR [--output_dir DIR] [--hub_model_id ORG/NAME]
python -m model_cards export --run_dir DIR --to DIR [--overwrite] [--max_shard_size 5GB]
                             [--push_to_hub --hub_model_id ORG/NAME [--revision B] [--commit_message M] [--private]]
python -m model_cards push --folder DIR --hub_model_id ORG/NAME [--revision B] [--commit_message M] [--private]

The flags are the training scripts': `HfArgumentParser` over the argument dataclasses below. Parsing imports
transformers' argument parser only, not torch: `--help` and a wrong flag answer at once, and the commands (which
read weights through the model package) are imported once the command line is valid.
"""

import argparse
import sys
from dataclasses import dataclass, field

from huggingface_hub.errors import HfHubHTTPError
from safetensors import SafetensorError
from transformers import HfArgumentParser

# Bad input, a bad folder or an unreachable Hub: one `error:` line, no traceback (other exceptions are bugs).
# ValueError covers the refusals of a run, a folder or its weights (IncompleteRunError, IncompleteCheckpointError,
# DamagedCheckpointError); OSError an unreachable Hub (HubUnreachableError) and missing files.
EXPECTED_ERRORS = (
    ValueError,
    SafetensorError,  # a weights file read by transformers itself, should one escape the checks that name it
    HfHubHTTPError,
    OSError,
)


@dataclass
class CardArguments:
    run_dir: str = field(metadata={"help": "The training run's output folder."})
    output_dir: str | None = field(default=None, metadata={"help": "Where to write the card; default: the run folder."})
    hub_model_id: str | None = field(
        default=None, metadata={"help": "The repo id the card's load snippet uses; default: the output folder."}
    )


@dataclass
class ExportArguments:
    run_dir: str = field(metadata={"help": "The training run's output folder."})
    to: str = field(metadata={"help": "The hub-ready folder to create."})
    overwrite: bool = field(default=False, metadata={"help": "Replace a non-empty destination."})
    max_shard_size: str = field(default="5GB", metadata={"help": "Safetensors shard size, e.g. 2GB."})
    push_to_hub: bool = field(default=False, metadata={"help": "Push the exported folder (needs --hub_model_id)."})
    hub_model_id: str | None = field(default=None, metadata={"help": "org/name on the Hub, also in the card."})

    def __post_init__(self):
        if self.push_to_hub and not self.hub_model_id:
            raise ValueError("--push_to_hub needs --hub_model_id ORG/NAME")


@dataclass
class PushArguments:
    folder: str = field(metadata={"help": "A hub-ready folder (made by `export`)."})
    hub_model_id: str = field(metadata={"help": "org/name on the Hub."})


@dataclass
class CommitArguments:
    """How a push commits, for `export --push_to_hub` and `push`."""

    revision: str | None = field(
        default=None, metadata={"help": "Branch to commit to; default: main (another is created if missing)."}
    )
    commit_message: str | None = field(default=None, metadata={"help": "The commit message."})
    private: bool = field(default=False, metadata={"help": "Create the repo private."})


COMMANDS = {  # name: (its argument dataclasses, its help)
    "card": ((CardArguments,), "write README.md and training_curves.png for a run (the default command)"),
    "export": ((ExportArguments, CommitArguments), "write a self-contained hub-ready folder (and optionally push it)"),
    "push": ((PushArguments, CommitArguments), "push a hub-ready folder to the Hub (HF_ENDPOINT, HF_TOKEN)"),
}


def parse_args(argv: list[str]) -> tuple[str, tuple]:
    """The command and its argument dataclasses; without a command, `card` (`python -m model_cards --run_dir DIR`)."""
    if not argv or argv[0] not in (*COMMANDS, "-h", "--help"):
        argv = ["card", *argv]
    parser = argparse.ArgumentParser(prog="python -m model_cards", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=HfArgumentParser)
    for name, (dataclass_types, help) in COMMANDS.items():
        commands.add_parser(name, dataclass_types=dataclass_types, help=help, description=help)
    namespace = vars(parser.parse_args(argv))
    command = namespace.pop("command")
    try:
        return command, commands.choices[command].parse_dict(namespace)
    except ValueError as error:  # a dataclass refused the combination (__post_init__)
        commands.choices[command].error(str(error))


def main(argv: list[str] | None = None) -> None:
    command, arguments = parse_args(sys.argv[1:] if argv is None else argv)
    from .card import write_model_card
    from .export import export_run

    try:
        if command == "card":
            (args,) = arguments
            print(write_model_card(args.run_dir, args.output_dir, repo_id=args.hub_model_id))
        elif command == "export":
            args, commit = arguments
            folder = export_run(
                args.run_dir,
                args.to,
                overwrite=args.overwrite,
                max_shard_size=args.max_shard_size,
                repo_id=args.hub_model_id,
            )
            print(folder)
            if args.push_to_hub:
                _push(folder, args.hub_model_id, commit)
        else:
            args, commit = arguments
            _push(args.folder, args.hub_model_id, commit)
    except EXPECTED_ERRORS as error:
        sys.exit(f"error: {error}")


def _push(folder, repo_id: str, commit: CommitArguments) -> None:
    from .hub import push_to_hub

    sha = push_to_hub(
        folder,
        repo_id,
        revision=commit.revision,
        commit_message=commit.commit_message,
        private=commit.private or None,
    )
    print(f"pushed {repo_id} at commit {sha}")
    print(f'load: from_pretrained("{repo_id}", trust_remote_code=True, revision="{sha}")')


if __name__ == "__main__":
    main()
