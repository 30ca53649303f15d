"""Pre-train a CustomTransformer from scratch: causal LM for decoder configs, masked LM for encoder configs.

    python -m training.pretrain --tokenizer_name_or_path tok --preset llama \
        --config_overrides "hidden_size=128,num_hidden_layers=4,num_attention_heads=4,intermediate_size=384" \
        --train_files corpus.txt --block_size 128 --output_dir out/lm --max_steps 1000

Texts are tokenized (each document ends with </s>), concatenated and cut into blocks of `block_size`
tokens, so no compute is spent on padding. The Trainer does the rest: loop, checkpoints, resumption,
evaluation (perplexity = exp(eval loss)) and distribution (torchrun / accelerate launch, unchanged).
"""

import ast
import inspect
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from datasets import DatasetDict
from transformers import AutoTokenizer, Trainer, TrainingArguments, set_seed

from custom_transformer import AUTO_CLASSES, PRESETS, CustomTransformerConfig

from .baselines import unigram_perplexity
from .cli import checkpoint_to_resume, parse_args, run_main, setup_logging
from .loading import (
    DataError,
    add_validation_split,
    check_tokenizer_fits,
    load_splits,
    require_columns,
    require_rows,
)
from .preprocessing import tokenize_into_blocks
from .results import hardware, hyperparameters, portable_path, write_run_info
from .scoring import perplexity
from .tasks import TASKS

logger = logging.getLogger("training")


@dataclass
class ModelArguments:
    tokenizer_name_or_path: str = field(metadata={"help": "Tokenizer folder (e.g. from training.train_tokenizer)."})
    preset: str | None = field(default=None, metadata={"help": f"Architecture preset: {', '.join(PRESETS)}."})
    config_file: str | None = field(
        default=None, metadata={"help": "A config.json (or a folder holding one) instead of --preset."}
    )
    config_overrides: str | None = field(
        default=None,
        metadata={"help": 'Config fields to change: "hidden_size=128,num_hidden_layers=4" or a JSON object.'},
    )


@dataclass
class DataArguments:
    train_files: list[str] | None = field(
        default=None, metadata={"help": "Training text: .txt, .json/.jsonl, .csv or .parquet files."}
    )
    validation_files: list[str] | None = field(default=None, metadata={"help": "Validation text, same formats."})
    dataset_dir: str | None = field(
        default=None, metadata={"help": "A dataset saved with save_to_disk, instead of files."}
    )
    text_column: str = field(default="text", metadata={"help": "Column holding the text (json/csv/parquet)."})
    text_sample_by: str = field(
        default="paragraph", metadata={"help": "How .txt files split into documents: line, paragraph or document."}
    )
    validation_split_percentage: float = field(
        default=5, metadata={"help": "Percent of train held out for validation when no validation data is given."}
    )
    block_size: int = field(default=128, metadata={"help": "Tokens per training example after packing."})
    mlm_probability: float = field(default=0.15, metadata={"help": "Masked-LM only: fraction of tokens to mask."})
    preprocessing_num_workers: int | None = field(default=None, metadata={"help": "Processes for tokenization."})
    dataset_name: str | None = field(default=None, metadata={"help": "Dataset name for run_info.json."})
    dataset_license: str = field(default="unknown", metadata={"help": "Dataset licence for run_info.json."})
    dataset_source: str = field(default="local files", metadata={"help": "Where the data came from (run_info)."})


def parse_overrides(text: str | None) -> dict:
    """ "a=1,b=x" or a JSON object -> dict; values are Python literals where they parse as one."""
    if not text:
        return {}
    if text.lstrip().startswith("{"):
        return json.loads(text)
    overrides = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if not sep:
            raise DataError(f"--config_overrides item {item!r} is not key=value (e.g. hidden_size=128).")
        try:
            overrides[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            overrides[key.strip()] = value.strip()
    return overrides


CONFIG_FIELDS = set(inspect.signature(CustomTransformerConfig.__init__).parameters) - {"self", "kwargs"}


def build_config(model_args: ModelArguments, tokenizer) -> CustomTransformerConfig:
    """The preset or config file, with the tokenizer's vocabulary and special-token ids, then the overrides."""
    if (model_args.preset is None) == (model_args.config_file is None):
        raise DataError("Give exactly one of --preset (e.g. llama, bert) and --config_file.")
    overrides = parse_overrides(model_args.config_overrides)
    unknown = sorted(set(overrides) - CONFIG_FIELDS)
    if unknown:
        raise DataError(f"Unknown config field(s) in --config_overrides: {unknown}. Known: {sorted(CONFIG_FIELDS)}.")
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


def main(argv: list[str] | None = None) -> dict:
    start = time.perf_counter()
    model_args, data_args, training_args = parse_args((ModelArguments, DataArguments, TrainingArguments), argv)
    setup_logging(training_args)
    resume_from = checkpoint_to_resume(training_args)

    # Everything that can be wrong with the inputs is found here, before a model exists.
    if not Path(model_args.tokenizer_name_or_path).exists():
        raise DataError(f"--tokenizer_name_or_path {model_args.tokenizer_name_or_path} does not exist.")
    tokenizer = AutoTokenizer.from_pretrained(model_args.tokenizer_name_or_path)
    config = build_config(model_args, tokenizer)
    check_tokenizer_fits(tokenizer, config.vocab_size, "the config", model_args.tokenizer_name_or_path)
    if data_args.block_size > config.max_position_embeddings:
        raise DataError(
            f"--block_size {data_args.block_size} exceeds max_position_embeddings={config.max_position_embeddings}: "
            "lower --block_size or raise max_position_embeddings in --config_overrides."
        )
    masked = not config.is_decoder
    task = TASKS["fill-mask" if masked else "text-generation"]
    if masked and tokenizer.mask_token is None:
        raise DataError(
            "Masked-LM pre-training (encoder config) needs a tokenizer with a mask token: "
            "use one from training.train_tokenizer."
        )
    splits = load_splits(
        {"train": data_args.train_files, "validation": data_args.validation_files},
        data_args.dataset_dir,
        data_args.text_sample_by,
    )
    if "train" not in splits:
        raise DataError(f"No train split in {data_args.dataset_dir}: it has {list(splits)}.")
    splits = DatasetDict({name: splits[name] for name in ("train", "validation") if name in splits})
    require_rows(splits, ["train", "validation"])
    require_columns(splits, {data_args.text_column: "--text_column"})
    splits = add_validation_split(splits, data_args.validation_split_percentage, training_args.seed)
    blocks = tokenize_into_blocks(
        splits,
        tokenizer,
        data_args.text_column,
        data_args.block_size,
        training_args,
        data_args.preprocessing_num_workers,
    )

    set_seed(training_args.seed)  # the initial weights
    model = AUTO_CLASSES[task.auto_class](config)
    logger.info(
        "%s model (%s): %.2fM parameters; %d train / %d validation blocks of %d tokens",
        "Masked-LM" if masked else "Causal-LM",
        model_args.preset or model_args.config_file,
        model.num_parameters() / 1e6,
        len(blocks["train"]),
        len(blocks["validation"]),
        data_args.block_size,
    )
    collator = task.data_collator(tokenizer, mlm_probability=data_args.mlm_probability)
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=blocks["train"],
        eval_dataset=blocks["validation"],
        processing_class=tokenizer,
        data_collator=collator,
    )

    train_result = trainer.train(resume_from_checkpoint=resume_from)
    trainer.save_model()  # the model with its remote code, and the tokenizer
    train_metrics = {**train_result.metrics, "train_samples": len(blocks["train"])}
    trainer.log_metrics("train", train_metrics)
    trainer.save_metrics("train", train_metrics)
    trainer.save_state()

    eval_metrics = trainer.evaluate()
    eval_metrics.update(eval_samples=len(blocks["validation"]), perplexity=perplexity(eval_metrics["eval_loss"]))
    trainer.log_metrics("eval", eval_metrics)
    trainer.save_metrics("eval", eval_metrics)

    if trainer.is_world_process_zero():
        baselines = {}
        if "unigram" in task.baselines:
            ppl = unigram_perplexity(blocks["train"]["input_ids"], blocks["validation"]["input_ids"], len(tokenizer))
            baselines["unigram"] = {"perplexity": ppl}
        files = [*(data_args.train_files or []), *(data_args.validation_files or [])] or [data_args.dataset_dir]
        write_run_info(
            training_args.output_dir,
            task=task.pipeline_tag,
            preset=model_args.preset or "custom",
            base_model=None,
            dataset={
                "name": data_args.dataset_name or Path(files[0]).stem,
                "files": [portable_path(f) for f in files],
                "license": data_args.dataset_license,
                "source": data_args.dataset_source,
                "split_sizes": {split: len(dataset) for split, dataset in splits.items()},
            },
            metrics={"loss": eval_metrics["eval_loss"], "perplexity": eval_metrics["perplexity"]},
            evaluated_split="validation",
            baselines=baselines,
            wall_time_seconds=round(time.perf_counter() - start, 1),
            hardware=hardware(training_args),
            hyperparameters=hyperparameters(training_args, config, block_size=data_args.block_size)
            | ({"mlm_probability": data_args.mlm_probability} if masked else {}),
        )
    return {**train_metrics, **eval_metrics}


if __name__ == "__main__":
    run_main(main)
