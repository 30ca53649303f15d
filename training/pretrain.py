"""Pre-train a CustomTransformer language model: causal LM for decoder configs, masked LM for encoder configs.

    python -m training.pretrain --tokenizer_name_or_path tok --preset llama \
        --config_overrides "hidden_size=128,num_hidden_layers=4,num_attention_heads=4,intermediate_size=384" \
        --train_files corpus.txt --block_size 128 --output_dir out/lm --max_steps 1000 --do_train --do_eval
    python -m training.pretrain --model_name_or_path out/lm --test_files heldout.txt --do_predict --output_dir scores

Texts are tokenized (each document ends with </s>), concatenated and cut into blocks of `block_size`
tokens, so no compute is spent on padding. The Trainer does the rest: loop, checkpoints, resumption,
evaluation (perplexity = exp(loss)) and distribution (torchrun / accelerate launch, unchanged). A run that
trains ends with run_info.json (training/run_record.py), validation perplexity next to a unigram baseline.
"""

import json
import logging
import time
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path

import numpy as np
from datasets import DatasetDict
from transformers import AutoConfig, AutoTokenizer, Trainer, set_seed

from custom_transformer import PRESETS, CustomTransformerConfig

from .common import (
    DataError,
    DataFileArguments,
    TrainingArguments,
    add_validation_split,
    check_disk_space,
    check_tokenizer_fits,
    config_overrides,
    load_data,
    parse_args,
    perplexity,
    preset_of,
    require_columns,
    require_model_folder,
    resume_or_start,
    run_main,
    setup_logging,
    train_and_evaluate,
    weights_named_when_damaged,
    write_run_record,
)
from .tasks import TASKS

logger = logging.getLogger("training")


@dataclass
class ModelArguments:
    tokenizer_name_or_path: str | None = field(
        default=None, metadata={"help": "Tokenizer folder (e.g. from training.train_tokenizer); default: the model's."}
    )
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "A saved language model to evaluate or train further, instead of --preset."}
    )
    preset: str | None = field(default=None, metadata={"help": f"Architecture preset: {', '.join(PRESETS)}."})
    config_file: str | None = field(
        default=None, metadata={"help": "A config.json (or a folder holding one) instead of --preset."}
    )
    config_overrides: str | None = field(
        default=None,
        metadata={"help": 'Config fields to change: "hidden_size=128,num_hidden_layers=4" or a JSON object.'},
    )


@dataclass
class DataArguments(DataFileArguments):
    text_column: str = field(default="text", metadata={"help": "Column holding the text (json/csv/parquet)."})
    text_sample_by: str = field(
        default="paragraph", metadata={"help": "How .txt files split into documents: line, paragraph or document."}
    )
    block_size: int = field(default=128, metadata={"help": "Tokens per example after packing."})
    mlm_probability: float = field(default=0.15, metadata={"help": "Masked-LM only: fraction of tokens to mask."})


def build_config(model_args: ModelArguments, tokenizer) -> CustomTransformerConfig:
    """The saved model's config; or the preset or config file, with the tokenizer's vocabulary and special-token
    ids, then the overrides."""
    if model_args.model_name_or_path is not None:
        if model_args.preset or model_args.config_file or model_args.config_overrides:
            raise DataError(
                "--model_name_or_path brings its own config: drop --preset/--config_file/--config_overrides."
            )
        return AutoConfig.from_pretrained(model_args.model_name_or_path)
    if (model_args.preset is None) == (model_args.config_file is None):
        raise DataError("Give exactly one of --preset (e.g. llama, bert), --config_file and --model_name_or_path.")
    overrides = config_overrides(model_args.config_overrides)
    from_tokenizer = {
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }
    if model_args.preset is not None:
        if model_args.preset not in PRESETS:
            raise DataError(f"Unknown --preset {model_args.preset!r}. Known presets: {', '.join(PRESETS)}.")
        return CustomTransformerConfig.from_preset(
            model_args.preset, **{"vocab_size": len(tokenizer), **from_tokenizer, **overrides}
        )
    path = Path(model_args.config_file)
    path = path / "config.json" if path.is_dir() else path
    if not path.is_file():
        raise DataError(f"--config_file {model_args.config_file} does not exist (nor a folder with config.json).")
    return CustomTransformerConfig.from_dict({**json.loads(path.read_text()), **from_tokenizer, **overrides})


def tokenize_into_blocks(
    splits: DatasetDict, tokenizer, data_args: DataArguments, training_args: TrainingArguments
) -> DatasetDict:
    """Tokenize every document (<s> ... </s>), concatenate, and cut into `block_size` blocks, dropping the tail.

    Runs through `Dataset.map(batched=True)` under `main_process_first`: in a distributed run one process
    tokenizes and the others read its cache."""
    text_column, block_size, eos_id = data_args.text_column, data_args.block_size, tokenizer.eos_token_id

    def tokenize(batch):
        # Only ids: the masked-LM collator finds special tokens by id, and every block is all attention.
        encoded = tokenizer(batch[text_column], return_attention_mask=False)
        return {"input_ids": [ids + [eos_id] for ids in encoded["input_ids"]]}

    def group(batch):
        ids = list(chain.from_iterable(batch["input_ids"]))
        usable = len(ids) // block_size * block_size
        return {"input_ids": [ids[i : i + block_size] for i in range(0, usable, block_size)]}

    num_proc = data_args.preprocessing_num_workers
    with training_args.main_process_first(desc="tokenizing and packing"):
        splits = splits.filter(lambda row: bool(row[text_column] and row[text_column].strip()), num_proc=num_proc)
        tokenized = DatasetDict(
            {
                split: dataset.map(tokenize, batched=True, num_proc=num_proc, remove_columns=dataset.column_names)
                for split, dataset in splits.items()
            }
        )
        blocks = tokenized.map(group, batched=True, num_proc=num_proc, desc=f"Packing into blocks of {block_size}")
    for split, dataset in blocks.items():
        if len(dataset) == 0:
            n_tokens = sum(len(ids) for ids in tokenized[split]["input_ids"])
            raise DataError(
                f"The {split} split holds {n_tokens} tokens, fewer than one block of --block_size {block_size}: "
                "give more text or a smaller --block_size."
            )
    return blocks


def unigram_perplexity(blocks: DatasetDict, evaluated_split: str, vocab_size: int) -> dict[str, float]:
    """Perplexity of add-one-smoothed train token frequencies on the tokens a causal LM predicts (all but each
    block's first): what a model that ignores context scores."""
    counts = np.bincount(np.concatenate(blocks["train"]["input_ids"]), minlength=vocab_size) + 1.0
    log_probs = np.log(counts / counts.sum())
    predicted = np.concatenate([np.asarray(block)[1:] for block in blocks[evaluated_split]["input_ids"]])
    return {"perplexity": float(np.exp(-log_probs[predicted].mean()))}


BASELINES = {"unigram": unigram_perplexity}  # the names a Task's `baselines` may list for language models


def main(argv: list[str] | dict | None = None) -> dict:
    started = time.perf_counter()
    model_args, data_args, training_args = parse_args((ModelArguments, DataArguments, TrainingArguments), argv)
    setup_logging(training_args)
    resume_from = resume_or_start(training_args)

    # Everything that can be wrong with the inputs is found here, before a model exists.
    if model_args.model_name_or_path is not None:
        require_model_folder(model_args.model_name_or_path)
    tokenizer_source = model_args.tokenizer_name_or_path or model_args.model_name_or_path
    if tokenizer_source is None:
        raise DataError(
            "Pass --tokenizer_name_or_path (a folder from training.train_tokenizer), or --model_name_or_path."
        )
    if not Path(tokenizer_source).exists():
        raise DataError(f"--tokenizer_name_or_path {tokenizer_source} does not exist.")
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source)
    config = build_config(model_args, tokenizer)
    check_tokenizer_fits(tokenizer, config.vocab_size, model_args.model_name_or_path or "the config", tokenizer_source)
    if data_args.block_size > config.max_position_embeddings:
        raise DataError(
            f"--block_size {data_args.block_size} exceeds max_position_embeddings={config.max_position_embeddings}: "
            "lower --block_size or raise max_position_embeddings in --config_overrides."
        )
    task = TASKS["text-generation" if config.is_decoder else "fill-mask"]
    if task.collator_kwargs.get("mlm") and tokenizer.mask_token is None:
        raise DataError(
            "Masked-LM pre-training (encoder config) needs a tokenizer with a mask token: "
            "use one from training.train_tokenizer."
        )
    raw = load_data(data_args, training_args, sample_by=data_args.text_sample_by)
    require_columns(raw, {data_args.text_column: "--text_column"})
    if training_args.do_train:
        raw = add_validation_split(raw, data_args.validation_split_percentage, training_args.seed)
    blocks = tokenize_into_blocks(raw, tokenizer, data_args, training_args)

    set_seed(training_args.seed)  # the initial weights
    if model_args.model_name_or_path is not None:
        with weights_named_when_damaged(model_args.model_name_or_path):
            model = task.auto_model().from_pretrained(model_args.model_name_or_path)
    else:
        model = task.auto_model().from_config(config)
    check_disk_space(training_args, model)
    logger.info(
        "%s (%s): %.2fM parameters; blocks of %d tokens: %s",
        type(model).__name__,
        model_args.model_name_or_path or model_args.preset or model_args.config_file,
        model.num_parameters() / 1e6,
        data_args.block_size,
        {split: len(dataset) for split, dataset in blocks.items()},
    )
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=blocks.get("train"),
        eval_dataset=blocks.get("validation"),
        processing_class=tokenizer,
        data_collator=task.data_collator(tokenizer, mlm_probability=data_args.mlm_probability),
    )
    evaluated = {"eval": blocks.get("validation"), "test": blocks.get("test")}
    results = train_and_evaluate(
        trainer, resume_from, evaluated, lambda step, m: {f"{step}_perplexity": perplexity(m[f"{step}_loss"])}
    )

    write_run_record(
        trainer,
        task=task.pipeline_tag,
        preset=model_args.preset or preset_of(model_args.model_name_or_path),
        data_args=data_args,
        split_sizes={split: len(dataset) for split, dataset in raw.items()},
        results=results,
        started=started,
        baselines=lambda split: {name: BASELINES[name](blocks, split, len(tokenizer)) for name in task.baselines},
        base_model=model_args.model_name_or_path,
        block_size=data_args.block_size,
        **({"mlm_probability": data_args.mlm_probability} if task.collator_kwargs.get("mlm") else {}),
    )
    return {key: value for metrics in results.values() for key, value in metrics.items()}


if __name__ == "__main__":
    run_main(main)
