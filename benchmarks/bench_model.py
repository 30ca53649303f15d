"""Forward and generation speed of the presets, printed as a table of times and ratios measured in one run.

    python benchmarks/bench_model.py [--hidden 256 --layers 4 --batch 8 --seq 256 --repeats 5]

Compare ratios (sdpa vs eager, cached vs uncached decoding), not absolute times: machines are shared.
"""

import argparse
import statistics
import time

import torch

from custom_transformer import CustomTransformerConfig, CustomTransformerForCausalLM, CustomTransformerModel


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@torch.inference_mode()
def forward_seconds(model, input_ids, repeats: int) -> tuple[float, float]:
    """Median forward time with eager and with sdpa attention."""
    model.set_attn_implementation("eager")
    eager = median_seconds(lambda: model(input_ids), repeats)
    model.set_attn_implementation("sdpa")
    return eager, median_seconds(lambda: model(input_ids), repeats)


def generation_seconds(lm, prompt, new_tokens: int, repeats: int) -> tuple[float, float]:
    """Median greedy-generation time without and with the KV cache."""
    kwargs = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, pad_token_id=0)
    uncached = median_seconds(lambda: lm.generate(prompt, use_cache=False, **kwargs), repeats)
    return uncached, median_seconds(lambda: lm.generate(prompt, use_cache=True, **kwargs), repeats)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    sizes = dict(
        vocab_size=8000,
        hidden_size=args.hidden,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        intermediate_size=4 * args.hidden,
        max_position_embeddings=max(512, args.seq + args.new_tokens),
        hidden_dropout=0.0,
        attention_dropout=0.0,
    )
    input_ids = torch.randint(0, 8000, (args.batch, args.seq))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch} x seq {args.seq}")
    print(
        "| preset | eager fwd (ms) | sdpa fwd (ms) | eager/sdpa | uncached gen (ms) | cached gen (ms) | uncached/cached |"
    )
    print("|---|---|---|---|---|---|---|")
    for preset in ("llama", "gpt2", "bert", "vaswani"):
        config = CustomTransformerConfig.from_preset(preset, **sizes)
        eager, sdpa = forward_seconds(CustomTransformerModel(config).eval(), input_ids, args.repeats)
        row = f"| {preset} | {eager * 1e3:.1f} | {sdpa * 1e3:.1f} | {eager / sdpa:.2f} |"
        if config.is_decoder:
            lm = CustomTransformerForCausalLM(config).eval()
            uncached, cached = generation_seconds(lm, input_ids[:1, :64], args.new_tokens, max(1, args.repeats // 2))
            row += f" {uncached * 1e3:.0f} | {cached * 1e3:.0f} | {uncached / cached:.2f} |"
        else:
            row += " - | - | - |"
        print(row)


if __name__ == "__main__":
    main()
