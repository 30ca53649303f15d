"""Every transformers API that moved inside 5.x, resolved once at import, by feature rather than by version number.

These files are copied into every checkpoint and run under whatever transformers the person loading it has
installed, from ``MIN_TRANSFORMERS_VERSION`` to releases that do not exist yet. Each fact below is read off
the installed code (a signature, a dataclass field), so backports and git installs are handled too, and the
model code stays a straight line. A protocol this module does not recognise is an ImportError that names the
release and the fix, never a model that loads and quietly computes something else.
"""

import dataclasses
import inspect

import transformers
from packaging import version

MIN_TRANSFORMERS_VERSION = "5.0.0"
# The newest release this code was verified on (`make compat`); the lock file pins no newer one.
NEWEST_VERIFIED_TRANSFORMERS_VERSION = "5.25.0"

if version.parse(transformers.__version__) < version.parse(MIN_TRANSFORMERS_VERSION):
    raise ImportError(
        f"custom_transformer checkpoints need transformers>={MIN_TRANSFORMERS_VERSION}, but transformers "
        f"{transformers.__version__} is installed. Upgrade with: pip install -U 'transformers>={MIN_TRANSFORMERS_VERSION}'"
    )

from transformers import GenerationMixin  # noqa: E402
from transformers.cache_utils import Cache  # noqa: E402
from transformers.masking_utils import create_bidirectional_mask, create_causal_mask  # noqa: E402
from transformers.modeling_outputs import BaseModelOutputWithPast  # noqa: E402
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS as _REGISTERED_ATTENTION_FUNCTIONS  # noqa: E402

try:  # 5.23+: output capture and config-default merging are two decorators
    from transformers.utils.generic import merge_with_config_defaults
    from transformers.utils.output_capturing import capture_outputs

    def record_outputs(forward):
        """Fill `use_cache`/`output_*` from the config and collect `_can_record_outputs` with hooks."""
        return merge_with_config_defaults(capture_outputs(forward))

except ImportError:  # 5.0 - 5.22: one decorator did both
    from transformers.utils.generic import check_model_inputs as record_outputs  # noqa: F401


def _one_of(names, candidates: tuple[str, ...], what: str) -> str:
    """The first of `candidates` found in `names`; an ImportError naming the release and the fix otherwise."""
    for candidate in candidates:
        if candidate in names:
            return candidate
    raise ImportError(
        f"custom_transformer's checkpoint code does not recognise transformers {transformers.__version__}: "
        f"{what} uses none of {candidates} (found: {sorted(names)}). Refresh the checkpoint's code with "
        "`pip install -U custom-transformer && python -m custom_transformer.refresh PATH_OR_REPO_ID`, "
        "or install a transformers release this checkpoint knows: "
        f"pip install 'transformers<={NEWEST_VERIFIED_TRANSFORMERS_VERSION}'."
    )


def _parameters(function) -> set[str]:
    return set(inspect.signature(function).parameters)  # follows functools.wraps, so deprecation shims are seen through


# The keyword `generate` passes the cache under, and the one gradient checkpointing clears: `cache` from 5.24.
CACHE_KWARG = _one_of(
    _parameters(GenerationMixin.prepare_inputs_for_generation), ("cache", "past_key_values"), "generate's cache keyword"
)
# The output field `generate` reads the cache back from (`outputs["cache"]` from 5.24).
CACHE_FIELD = _one_of(
    {field.name for field in dataclasses.fields(BaseModelOutputWithPast)}, ("cache", "past_key_values"), "model outputs"
)
# Keywords of the mask builders: `input_embeds` and a required `cache_position` in early 5.x, `cache` from 5.24.
_CAUSAL_MASK_PARAMETERS = _parameters(create_causal_mask)
_MASK_CACHE_KEYWORD = _one_of(_CAUSAL_MASK_PARAMETERS, ("cache", "past_key_values"), "create_causal_mask's cache")
_MASK_EMBEDS_KEYWORD = _one_of(_CAUSAL_MASK_PARAMETERS, ("inputs_embeds", "input_embeds"), "create_causal_mask")
_MASK_TAKES_CACHE_POSITION = "cache_position" in _CAUSAL_MASK_PARAMETERS
_BIDIRECTIONAL_EMBEDS_KEYWORD = _one_of(
    _parameters(create_bidirectional_mask), ("inputs_embeds", "input_embeds"), "create_bidirectional_mask"
)
# Early 5.x caches take `cache_kwargs={"cache_position": ...}` (static layers write at those slots); later ones
# count positions themselves and take the attention kwargs, which a paged cache (5.24+) fills in place.
_UPDATE_TAKES_CACHE_KWARGS = "cache_kwargs" in _parameters(Cache.update)
# Whether the model must compute `cache_position` even when `generate` gives it `position_ids`.
NEEDS_CACHE_POSITION = _MASK_TAKES_CACHE_POSITION or _UPDATE_TAKES_CACHE_KWARGS
# Names the cache goes by at the public boundary (callers of `forward`, Trainer's ignore list, device placement).
CACHE_NAMES = ["past_key_values", "cache"]


def pop_cache(past_key_values: Cache | None, kwargs: dict) -> Cache | None:
    """The caller's cache, passed as `past_key_values=` or as `cache=` (the 5.24 name), never both.

    Before 5.24, a `cache=` keyword is continuous batching's paged cache, meant for the attention kernels
    (which update it themselves): it stays in `kwargs` and flows down to them.
    """
    cache = kwargs.pop("cache", None) if CACHE_KWARG == "cache" else None
    if cache is not None and past_key_values is not None and cache is not past_key_values:
        raise ValueError("Pass the key/value cache once, as `cache=` or as `past_key_values=`, not both.")
    return cache if cache is not None else past_key_values


def update_cache(cache: Cache, key, value, layer_idx: int, cache_position, attention_kwargs: dict):
    """Append this step's keys and values to the cache and return all of them (`cache_position=None`: the encoder's
    keys and values, written once from the start of a cross-attention cache)."""
    if _UPDATE_TAKES_CACHE_KWARGS:
        return cache.update(key, value, layer_idx, {"cache_position": cache_position})
    return cache.update(key, value, layer_idx, kwargs=attention_kwargs)


def causal_mask(config, inputs_embeds, attention_mask, cache_position, cache, position_ids):
    """Causal (decoder) mask in the format the configured attention backend expects."""
    extra = {"cache_position": cache_position} if _MASK_TAKES_CACHE_POSITION else {}
    return create_causal_mask(
        config=config,
        attention_mask=attention_mask,
        position_ids=position_ids,
        **{_MASK_EMBEDS_KEYWORD: inputs_embeds, _MASK_CACHE_KEYWORD: cache},
        **extra,
    )


def bidirectional_mask(config, inputs_embeds, attention_mask, cache_position, cache, position_ids):
    """Padding-only (encoder) mask; same signature as `causal_mask` so the model picks one at construction."""
    return create_bidirectional_mask(
        config=config, attention_mask=attention_mask, **{_BIDIRECTIONAL_EMBEDS_KEYWORD: inputs_embeds}
    )


def cross_attention_mask(config, inputs_embeds, encoder_attention_mask, encoder_hidden_states):
    """The mask of the decoder's attention to the encoder: the encoder's padding, for every decoder position."""
    return create_bidirectional_mask(
        config=config,
        attention_mask=encoder_attention_mask,
        encoder_hidden_states=encoder_hidden_states,
        **{_BIDIRECTIONAL_EMBEDS_KEYWORD: inputs_embeds},
    )


def tie_heads_left_on_meta(model) -> None:
    """Tie an output head that `from_pretrained` left unloaded on the meta device to its input embedding.

    transformers 5.3 (fixed in 5.4), loading remote code, marks a tied head as loaded before tying, then decides
    both weights are in the checkpoint and does not tie them: the head stays on meta and its logits are whatever
    memory holds. On every other release a tied head is never left on meta, so this does nothing there.
    """
    if not getattr(model.config, "tie_word_embeddings", False):
        return
    for target, source in (model._tied_weights_keys or {}).items():
        source_weight = model.get_parameter(source)
        if model.get_parameter(target).is_meta and not source_weight.is_meta:
            module, _, name = target.rpartition(".")
            setattr(model.get_submodule(module), name, source_weight)
            if hasattr(model, "all_tied_weights_keys"):  # what save_pretrained reads to de-duplicate tied weights
                model.all_tied_weights_keys[target] = source


def slice_logits_to_keep(hidden_states, logits_to_keep):
    """Keep the last `logits_to_keep` positions (0 keeps all); an int or a tensor of indices.

    transformers has this helper only from 5.23, so it lives here for older loaders.
    """
    if isinstance(logits_to_keep, int):
        return hidden_states[:, -logits_to_keep:, :] if logits_to_keep else hidden_states
    return hidden_states[:, logits_to_keep, :]


class _AttentionFunctions:
    """transformers 5.0's attention registry with the `get_interface` lookup that 5.1 added."""

    def __init__(self, registry):
        self.registry = registry

    def get_interface(self, attn_implementation: str | None, default):
        if attn_implementation in (None, "eager"):
            return default
        return self.registry[attn_implementation]


# The modeling file calls `ALL_ATTENTION_FUNCTIONS.get_interface(...)` literally (and names 5.0's pattern beside it):
# transformers searches the model's source for that text before it lets `set_attn_implementation` switch kernels.
ALL_ATTENTION_FUNCTIONS = (
    _REGISTERED_ATTENTION_FUNCTIONS
    if hasattr(_REGISTERED_ATTENTION_FUNCTIONS, "get_interface")
    else _AttentionFunctions(_REGISTERED_ATTENTION_FUNCTIONS)
)
