"""`transformers serve` for checkpoints that bring their own code: an OpenAI-compatible chat server.

    python -m custom_transformer.serve ./ckpt --trust-remote-code --port 8000

Upstream's server loads a model by looking `config.architectures[0]` up in the `transformers` namespace
(`ModelManager._load_model`), so a remote-code architecture such as `CustomTransformerForCausalLM` stops it with
an AttributeError before it serves anything. This entry point runs upstream's own `serve` command, with the same
options, routes and generation, and changes one thing: a model whose architecture transformers does not have is
loaded with `AutoModelForCausalLM`, which runs the code the checkpoint carries with `--trust-remote-code` (the
installed package's classes, registered on import, without it): trusting remote code stays the user's decision,
as it is upstream. The model code does not import this module, so it is never copied into checkpoints.
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
# The first release whose server loads models in `ModelManager._load_model(model_id_and_revision, ...)`.
SERVING_MIN_TRANSFORMERS_VERSION = "5.5.0"


def upstream_model_manager() -> type:
    """Upstream's `ModelManager`, once its loading hook is known to be there (read off the code, not the version)."""
    fix = (
        f"transformers {transformers.__version__} is installed, and serving needs the model manager of transformers>="
        f"{SERVING_MIN_TRANSFORMERS_VERSION}. Upgrade with: pip install 'custom-transformer[serving]' "
        f"(or pip install -U 'transformers[serving]>={SERVING_MIN_TRANSFORMERS_VERSION}')"
    )
    try:
        from transformers.cli.serving import model_manager
    except ImportError as error:
        raise ImportError(f"transformers.cli.serving.model_manager is missing: {fix}") from error
    load = getattr(model_manager.ModelManager, "_load_model", None)
    if load is None or "model_id_and_revision" not in inspect.signature(load).parameters:
        raise ImportError(f"ModelManager._load_model(model_id_and_revision, ...) is missing: {fix}")
    return model_manager.ModelManager


ModelManager = upstream_model_manager()


def split_revision(model_id_and_revision: str) -> tuple[str, str | None]:
    """`org/model@rev` -> (`org/model`, `rev`); an existing path keeps an `@` it contains, as upstream's server does."""
    if os.path.exists(model_id_and_revision):
        return model_id_and_revision, None
    model_id, _, revision = model_id_and_revision.partition("@")
    return model_id, revision or None


class RemoteCodeModelManager(ModelManager):
    """Upstream's model manager, which also loads causal LMs whose class only the checkpoint's code defines."""

    def _load_model(
        self,
        model_id_and_revision: str,
        tqdm_class: type | None = None,
        progress_callback: Callable | None = None,
        **kwargs,
    ) -> PreTrainedModel:
        model_id, revision = split_revision(model_id_and_revision)
        architectures = None
        if kwargs.get("gguf_file") is None:  # a GGUF file holds its own config, which upstream reads
            config = AutoConfig.from_pretrained(model_id, revision=revision, trust_remote_code=self.trust_remote_code)
            architectures = config.architectures
        if not architectures or hasattr(transformers, architectures[0]):
            return super()._load_model(
                model_id_and_revision, tqdm_class=tqdm_class, progress_callback=progress_callback, **kwargs
            )
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
        return AutoModelForCausalLM.from_pretrained(model_id, **model_kwargs)


def main(argv: list[str] | None = None) -> None:
    from transformers.cli.serving import model_manager

    # `Serve` imports `ModelManager` from its module when it starts (5.5 - 5.24): it builds this one instead.
    model_manager.ModelManager = RemoteCodeModelManager
    # Plain click help, as `transformers serve --help` prints it.
    app = typer.Typer(
        add_completion=False, rich_markup_mode=None, context_settings={"help_option_names": ["-h", "--help"]}
    )
    app.command(help=f"{HELP}\n{Serve.__doc__}")(Serve)
    app(args=argv, prog_name="python -m custom_transformer.serve")


if __name__ == "__main__":
    main()
