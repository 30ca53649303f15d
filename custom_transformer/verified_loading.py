"""Load a checkpoint through the installed package, after verifying the code it carries: `from_pretrained`.

With the package installed there is no reason to run a checkpoint's copy of the code at all: the installed classes
load every release's checkpoints (tests/test_saved_checkpoints.py). Verifying first still matters, because a
checkpoint whose code was edited may hold weights that only make sense with the edit; such a checkpoint is refused
with the verify report unless the caller accepts it on purpose.
"""

import logging

from . import modeling_custom_transformer as modeling
from .configuration_custom_transformer import CustomTransformerConfig
from .verify import verify

logger = logging.getLogger(__name__)


class UnverifiedCodeError(ValueError):
    """The checkpoint's code is not exactly a release's; the message is the verify report."""


def from_pretrained(
    target: str,
    *,
    model_class=None,
    revision: str | None = None,
    allow_unverified: bool = False,
    **kwargs,
):
    """Verify `target` (a folder or a Hub repo id at `revision`), then load it with the installed classes.

    `model_class`: the class to load (a custom_transformer head or an Auto class); default `architectures[0]` of
    its config. A Hub repo is loaded at the commit that was verified. The checkpoint's own code is never run, so
    `trust_remote_code` is refused. `allow_unverified=True` loads a checkpoint whose code does not verify (warning).
    """
    if kwargs.pop("trust_remote_code", False):
        raise ValueError(
            "custom_transformer.from_pretrained never runs a checkpoint's code: drop trust_remote_code (the installed "
            "classes load it)."
        )
    report = verify(target, revision)
    if not report.verified:
        if not allow_unverified:
            raise UnverifiedCodeError(
                f"{report.text()}\nRefused. To load it anyway with the installed classes (its own code is never run), "
                "pass allow_unverified=True."
            )
        logger.warning("Loading %s although its code does not verify: %s", target, report.summary)
    revision = report.commit or revision
    config = CustomTransformerConfig.from_pretrained(target, revision=revision)
    model_class = model_class or saved_head(config, target)
    return model_class.from_pretrained(target, revision=revision, config=config, trust_remote_code=False, **kwargs)


def saved_head(config: CustomTransformerConfig, target: str):
    architecture = (config.architectures or ["CustomTransformerModel"])[0]
    head = getattr(modeling, architecture, None)
    if not (isinstance(head, type) and issubclass(head, modeling.CustomTransformerPreTrainedModel)):
        raise ValueError(
            f"{target}/config.json names architecture {architecture!r}, which is no custom_transformer class: pass "
            "model_class= (for example transformers.AutoModel)."
        )
    return head
