"""The translation path on real parallel text, in one command: `python -m training.translation_demo`.

1. The Bible in Spanish (Reina-Valera 1909) and English (World English Bible), public domain, from Debian's
   `sword-text-sparv` and `sword-text-web`, paired verse by verse and split by whole books
   (training/translation_data.py) into outputs/translation-demo/data/;
2. one byte-level BPE tokenizer trained on both sides of the training split;
3. the 2017 encoder-decoder (`vaswani` preset) trained from scratch by `training.finetune` on its config file,
   training/configs/translation_demo/finetune.yaml, and scored on the held-out test books next to copying the
   source, a TF-IDF translation memory and a word-by-word dictionary, fitted on the same training pairs;
4. the run's model card and a hub-ready folder with the tokenizer;
5. in a fresh interpreter where `import custom_transformer` fails, the hub-ready folder translates test verses
   through the `translation` pipeline the checkpoint ships.
"""

import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from datasets import load_from_disk
from transformers import HfArgumentParser

from . import finetune, translation_data
from .demo import card_and_hub_folder, moved, record_results, run_without_package, write_results
from .run_record import RunRecord
from .train_tokenizer import build_tokenizer

CONFIGS = Path(__file__).parent / "configs" / "translation_demo"
CONFIGURED_ROOT = "outputs/translation-demo"
MAX_WORDS = 40  # training verses longer than this (either side) are left out: the CPU budget; test books are whole
VOCAB_SIZE = 8000
SAMPLES = 5  # test verses the reloaded model translates


@dataclass
class TranslationDemoArguments:
    output_dir: str = field(default=CONFIGURED_ROOT, metadata={"help": "Where everything is written."})
    quick: bool = field(default=False, metadata={"help": "A tiny model on 2,000 pairs: checks the wiring only."})


def stage(number: int, title: str):
    print(f"\n{'=' * 100}\n[{number}/5] {title}\n{'=' * 100}", flush=True)


def main(argv: list[str] | None = None) -> dict:
    start = time.perf_counter()
    (args,) = HfArgumentParser(TranslationDemoArguments).parse_args_into_dataclasses(args=argv)
    out = Path(args.output_dir)
    quick = yaml.safe_load((CONFIGS / "quick.yaml").read_text(encoding="utf-8")) if args.quick else {}
    timings = {}

    stage(1, f"Data: {translation_data.SOURCE.name} -> {translation_data.TARGET.name} ({translation_data.LICENSE})")
    t = time.perf_counter()
    data_dir = translation_data.write_bible_pairs(out / "data", max_words=MAX_WORDS)
    splits = load_from_disk(str(data_dir))
    if quick.get("train_size"):
        splits["train"] = splits["train"].shuffle(seed=0).select(range(min(quick["train_size"], len(splits["train"]))))
        data_dir = out / "data-quick"
        splits.save_to_disk(data_dir)
    print({split: len(dataset) for split, dataset in splits.items()}, f"verse pairs in {data_dir}")
    timings["data"] = time.perf_counter() - t

    stage(2, "A tokenizer for both languages")
    t = time.perf_counter()
    tokenizer_dir = out / "tokenizer"
    both_sides = [text for pair in splits["train"] for text in (pair["source"], pair["target"])]
    vocab_size = quick.get("vocab_size", VOCAB_SIZE)
    build_tokenizer(both_sides, vocab_size=vocab_size, min_frequency=2, model_max_length=128).save_pretrained(
        tokenizer_dir
    )
    timings["tokenizer"] = time.perf_counter() - t

    stage(3, "Training the 2017 encoder-decoder from scratch, then the baselines")
    t = time.perf_counter()
    path = CONFIGS / "finetune.yaml"
    configured = yaml.safe_load(path.read_text(encoding="utf-8"))
    overridden = {**configured, **quick.get("finetune", {})}
    arguments = {key: moved(value, CONFIGURED_ROOT, str(out)) for key, value in overridden.items()}
    arguments.update(dataset_dir=str(data_dir), tokenizer_name_or_path=str(tokenizer_dir))
    print(f"python -m training.finetune {path.relative_to(CONFIGS.parents[2])}", flush=True)
    finetune.main(arguments)
    timings["train_and_baselines"] = time.perf_counter() - t

    translator_dir = Path(arguments["output_dir"])
    record = RunRecord.read(translator_dir)
    report = results_table(record)
    print(report)
    results = record_results(record, test_books=translation_data.TEST_BOOKS)

    stage(4, "Model card from the run's own results, and a hub-ready folder")
    t = time.perf_counter()
    hub = out / "hub" / "translator"
    card_and_hub_folder(translator_dir, hub)
    timings["card_and_export"] = time.perf_counter() - t

    stage(5, "Translating test verses in a fresh interpreter where `import custom_transformer` fails")
    t = time.perf_counter()
    verses = splits["test"].select(range(SAMPLES))
    run_without_package(out, ["--translator", str(hub.resolve()), "--sentences", *verses["source"]])
    timings["reload"] = time.perf_counter() - t

    return write_results(out, results, report, timings, start)


BASELINE_NAMES = {
    "copy_source": "copy of the source",
    "nearest_neighbour": "TF-IDF translation memory (nearest training verse)",
    "word_by_word": "word-by-word dictionary (Dice, training pairs)",
}


def results_table(record: RunRecord) -> str:
    sizes, split = record.dataset.split_sizes, record.evaluated_split
    rows = [
        *((name, record.baselines[key]) for key, name in BASELINE_NAMES.items() if key in record.baselines),
        (f"custom_transformer ({record.preset} preset, from scratch)", record.metrics),
    ]
    lines = [
        f"Spanish -> English, {split} split ({sizes[split]} verses of {', '.join(translation_data.TEST_BOOKS)}; "
        f"trained on {sizes['train']}):",
        f"  {'':<60} {'BLEU':>7} {'chrF':>7}",
        *(f"  {name:<60} {scores['bleu']:>7.2f} {scores['chrf']:>7.2f}" for name, scores in rows),
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
