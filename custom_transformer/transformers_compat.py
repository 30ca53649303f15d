"""The few transformers APIs that changed between 5.0 and today, chosen once at import.

These files are copied into every checkpoint and run under whatever transformers the person loading
it has installed, so they may only use what exists from ``MIN_TRANSFORMERS_VERSION`` on. Anything that
moved or was renamed inside 5.x is resolved here, once, so the model code stays a straight line.
"""

import inspect

import transformers
from packaging import version

MIN_TRANSFORMERS_VERSION = "5.0.0"

if version.parse(transformers.__version__) < version.parse(MIN_TRANSFORMERS_VERSION):
    raise ImportError(
        f"custom_transformer checkpoints need transformers>={MIN_TRANSFORMERS_VERSION}, but transformers "
        f"{transformers.__version__} is installed. Upgrade with: pip install -U 'transformers>={MIN_TRANSFORMERS_VERSION}'"
    )

from transformers.masking_utils import create_bidirectional_mask, create_causal_mask  # noqa: E402
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS  # noqa: E402

try:  # 5.23+: output capture and config-default merging are two decorators
    from transformers.utils.generic import merge_with_config_defaults
    from transformers.utils.output_capturing import capture_outputs

    def record_outputs(forward):
        """Fill `use_cache`/`output_*` from the config and collect `_can_record_outputs` with hooks."""
        return merge_with_config_defaults(capture_outputs(forward))

except ImportError:  # 5.0 - 5.22: one decorator did both
    from transformers.utils.generic import check_model_inputs as record_outputs  # noqa: F401


# `create_causal_mask` took `input_embeds` and a required `cache_position` until 5.2x; later releases
# take `inputs_embeds` and derive positions from the cache. Pick the keyword names once.
_CAUSAL_MASK_PARAMS = inspect.signature(create_causal_mask).parameters
_EMBEDS_KEYWORD = "inputs_embeds" if "inputs_embeds" in _CAUSAL_MASK_PARAMS else "input_embeds"
_TAKES_CACHE_POSITION = "cache_position" in _CAUSAL_MASK_PARAMS
_BIDIRECTIONAL_EMBEDS_KEYWORD = (
    "inputs_embeds" if "inputs_embeds" in inspect.signature(create_bidirectional_mask).parameters else "input_embeds"
)


def causal_mask(config, inputs_embeds, attention_mask, cache_position, past_key_values, position_ids):
    """Causal (decoder) mask in the format the configured attention backend expects."""
    extra = {"cache_position": cache_position} if _TAKES_CACHE_POSITION else {}
    return create_causal_mask(
        config=config,
        attention_mask=attention_mask,
        past_key_values=past_key_values,
        position_ids=position_ids,
        **{_EMBEDS_KEYWORD: inputs_embeds},
        **extra,
    )


def bidirectional_mask(config, inputs_embeds, attention_mask, cache_position, past_key_values, position_ids):
    """Padding-only (encoder) mask; same signature as `causal_mask` so the model picks one at construction."""
    return create_bidirectional_mask(
        config=config, attention_mask=attention_mask, **{_BIDIRECTIONAL_EMBEDS_KEYWORD: inputs_embeds}
    )


def slice_logits_to_keep(hidden_states, logits_to_keep):
    """Keep the last `logits_to_keep` positions (0 keeps all); an int or a tensor of indices.

    transformers has this helper only from 5.23, so it lives here for older loaders.
    """
    if isinstance(logits_to_keep, int):
        return hidden_states[:, -logits_to_keep:, :] if logits_to_keep else hidden_states
    return hidden_states[:, logits_to_keep, :]


def attention_function(attn_implementation: str | None, eager_fn):
    """The attention kernel registered under `config._attn_implementation` (eager when unset).

    Looked up on every call, like transformers' own models, because `set_attn_implementation` can switch
    it after construction. `AttentionInterface.get_interface` only exists from 5.1, hence the fallback.
    """
    if hasattr(ALL_ATTENTION_FUNCTIONS, "get_interface"):
        return ALL_ATTENTION_FUNCTIONS.get_interface(attn_implementation, eager_fn)
    if attn_implementation in (None, "eager"):
        return eager_fn
    return ALL_ATTENTION_FUNCTIONS[attn_implementation]
