"""The package's heads in transformers' Auto classes, so checkpoints load with `trust_remote_code=False` where the
package is installed (checkpoints carry `auto_map` and the code for everyone else)."""

import transformers

from .configuration_custom_transformer import CustomTransformerConfig
from .modeling_custom_transformer import HEADS, CustomTransformerPreTrainedModel


class HeadThatFits:
    """Stands in an Auto class that has a head per stack, as `AutoModel` has (`CustomTransformerModel` for one stack,
    `CustomTransformerSeq2SeqModel` for an encoder-decoder): transformers maps a config class to one model class,
    and this one hands each config to the head built for it."""

    config_class = CustomTransformerConfig
    heads: tuple[type[CustomTransformerPreTrainedModel], ...] = ()

    @classmethod
    def fitting(cls, config: CustomTransformerConfig) -> type[CustomTransformerPreTrainedModel]:
        for head in cls.heads:
            if head.fits(config):
                return head
        names = ", ".join(head.__name__ for head in cls.heads)
        raise ValueError(f"None of {names} is built for a config with stack={config.stack!r}.")

    @classmethod
    def _from_config(cls, config, **kwargs):
        return cls.fitting(config)._from_config(config, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, config, **kwargs):
        return cls.fitting(config).from_pretrained(pretrained_model_name_or_path, *model_args, config=config, **kwargs)


def heads_by_auto_class() -> dict[str, tuple[type[CustomTransformerPreTrainedModel], ...]]:
    grouped = {}
    for head in HEADS:
        grouped[head.auto_class] = (*grouped.get(head.auto_class, ()), head)
    return grouped


def register_with_auto_classes() -> None:
    transformers.AutoConfig.register(CustomTransformerConfig.model_type, CustomTransformerConfig, exist_ok=True)
    for auto_name, heads in heads_by_auto_class().items():
        model_class = (
            heads[0] if len(heads) == 1 else type(f"{heads[0].__name__}ThatFits", (HeadThatFits,), {"heads": heads})
        )
        getattr(transformers, auto_name).register(CustomTransformerConfig, model_class, exist_ok=True)
