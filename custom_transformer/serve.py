"""`transformers serve` for checkpoints that bring their own code: an OpenAI-compatible chat server.

    python -m custom_transformer.serve ./ckpt --trust-remote-code --port 8000

Upstream's server loads a model by looking `config.architectures[0]` up in the `transformers` namespace, so a
remote-code architecture such as `CustomTransformerForCausalLM` stops it with an AttributeError before it serves
anything. This entry point runs upstream's own `serve` command, with the same options, routes and generation, and
changes one thing: a model whose architecture transformers does not have is loaded with `AutoModelForCausalLM`,
which runs the code the checkpoint carries with `--trust-remote-code` (the installed package's classes, registered
on import, without it): trusting remote code stays the user's decision, as it is upstream. The model code does not
import this module, so it is never copied into checkpoints.

Where upstream loads models moved once: `ModelManager._load_model(model_id_and_revision, ...)` in 5.5 - 5.24, then
`ModelLoader._load_model(model_id, ...)` from 5.25, run in a spawned process per model (so the loader below is
pickled into it, and this module must import there). Which one is read off the installed code, not its version.
"""

import inspect
import os
from collections.abc import Callable

import transformers
import typer
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedModel
from transformers.cli.serve import Serve

HELP = (
    "`transformers serve`, which also loads causal LMs whose class only the checkpoint's code defines "
    "(with --trust-remote-code)."
)
# The first release whose server loads models in a class this module can extend (`ModelManager._load_model`).
SERVING_MIN_TRANSFORMERS_VERSION = "5.5.0"
# Upstream's class that loads a served model, newest layout first: (attribute of `model_manager`, first parameter).
LOADING_HOOKS = (("ModelLoader", "model_id"), ("ModelManager", "model_id_and_revision"))


def upstream_loader() -> type:
    """Upstream's class whose `_load_model` loads a served model: `ModelLoader` (5.25+) or `ModelManager` (5.5+)."""
    fix = (
        f"transformers {transformers.__version__} is installed, and serving needs the model loading of "
        f"transformers>={SERVING_MIN_TRANSFORMERS_VERSION}. Upgrade with: pip install 'custom-transformer[serving]' "
        f"(or pip install -U 'transformers[serving]>={SERVING_MIN_TRANSFORMERS_VERSION}')"
    )
    try:
        from transformers.cli.serving import model_manager
    except ImportError as error:
        raise ImportError(f"transformers.cli.serving.model_manager is missing: {fix}") from error
    for name, first_parameter in LOADING_HOOKS:
        load = getattr(getattr(model_manager, name, None), "_load_model", None)
        if load is not None and first_parameter in inspect.signature(load).parameters:
            return getattr(model_manager, name)
    hooks = " nor ".join(f"{name}._load_model({parameter}, ...)" for name, parameter in LOADING_HOOKS)
    raise ImportError(f"transformers.cli.serving.model_manager has neither {hooks}: {fix}")


UpstreamLoader = upstream_loader()


def split_model_id(model_id: str, gguf_file: str | None = None) -> tuple[str, str | None, str | None]:
    """`org/model@rev` -> (`org/model`, `rev`, `gguf_file`); an existing path keeps an `@` it contains, as upstream.

    From 5.25 the id may also end in `:file.gguf`, which upstream's own `parse_model_id` splits off.
    """
    try:
        from transformers.cli.serving.utils import parse_model_id
    except ImportError:  # 5.5 - 5.24: `model@revision`, the GGUF file passed beside it
        if os.path.exists(model_id):
            return model_id, None, gguf_file
        repo, _, revision = model_id.partition("@")
        return repo, revision or None, gguf_file
    return parse_model_id(model_id)


class RemoteCodeModelLoader(UpstreamLoader):
    """Upstream's model loading, which also loads causal LMs whose class only the checkpoint's code defines."""

    def _load_model(
        self, model_id: str, tqdm_class: type | None = None, progress_callback: Callable | None = None, **kwargs
    ) -> PreTrainedModel:
        repo, revision, gguf_file = split_model_id(model_id, kwargs.get("gguf_file"))
        architectures = None
        if gguf_file is None:  # a GGUF file holds its own config, which upstream reads
            config = AutoConfig.from_pretrained(repo, revision=revision, trust_remote_code=self.trust_remote_code)
            architectures = config.architectures
        if not architectures or hasattr(transformers, architectures[0]):
            return super()._load_model(model_id, tqdm_class=tqdm_class, progress_callback=progress_callback, **kwargs)
        # The same keywords upstream passes to the class it looks up.
        model_kwargs = {
            "revision": revision,
            "attn_implementation": self.attn_implementation,
            "dtype": self.dtype,
            "device_map": self.device,
            "trust_remote_code": self.trust_remote_code,
            "tqdm_class": tqdm_class,
        }
        quantization_config = self.get_quantization_config()
        if quantization_config is not None:
            model_kwargs["quantization_config"] = quantization_config
        return AutoModelForCausalLM.from_pretrained(repo, **model_kwargs)


def main(argv: list[str] | None = None) -> None:
    from transformers.cli.serving import model_manager

    # `Serve` imports the loading class from its module when it starts: it builds this one instead.
    setattr(model_manager, UpstreamLoader.__name__, RemoteCodeModelLoader)
    # Plain click help, as `transformers serve --help` prints it.
    app = typer.Typer(
        add_completion=False, rich_markup_mode=None, context_settings={"help_option_names": ["-h", "--help"]}
    )
    app.command(help=f"{HELP}\n{Serve.__doc__}")(Serve)
    app(args=argv, prog_name="python -m custom_transformer.serve")


if __name__ == "__main__":
    # Through the importable module (this file imported again under its package name), so the loader pickled into
    # 5.25's spawned model process names a class that process finds.
    from .serve import main as importable_main

    importable_main()
