"""A static-cache decode step as a module: what `torch.export` traces (also run where the package is blocked)."""

import torch
from transformers import StaticCache


class StaticCacheDecodeStep(torch.nn.Module):
    """One decode step over a prefilled static cache, positions derived from the cache: what an exporter traces.

    The cache's tensors are registered as buffers so `torch.export` lifts them as mutable state, not constants.
    """

    def __init__(self, model, cache: StaticCache):
        super().__init__()
        self.model, self.cache = model, cache
        for index, layer in enumerate(cache.layers):
            for name, value in vars(layer).items():
                if isinstance(value, torch.Tensor):
                    self.register_buffer(f"cache_{index}_{name}", value, persistent=False)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids, past_key_values=self.cache, use_cache=True).logits
