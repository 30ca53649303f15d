"""Translation (and any other text-to-text task of sentence pairs): sources and targets tokenized by one tokenizer
(the target as `text_target`, which becomes the labels), evaluation by generating (`Seq2SeqTrainer` with
`predict_with_generate`), BLEU and chrF through sacrebleu, and three baselines scored on the same rows: copying the
source, the target of the training source most like it (TF-IDF nearest neighbour, a translation memory), and a
word-for-word dictionary learnt from the training pairs.

What `training.finetune` asks of a task's code is listed in `classification.py`.
"""

import re
from collections import Counter

import numpy as np
from datasets import DatasetDict, Value
from sklearn.feature_extraction.text import TfidfVectorizer
from transformers import EvalPrediction, Seq2SeqTrainer

from ..common import DataError, load_metric, map_replacing_columns
from . import Task

WORD = re.compile(r"\w+|[^\w\s]")  # words and punctuation marks, as the dictionary baseline reads them
IGNORE_INDEX = -100  # label padding (DataCollatorForSeq2Seq), and the padding of generated ids between batches
INCLUDE_FOR_METRICS = ()
logits_to_predictions = None  # evaluation keeps the generated token ids as they are


def read_labels(raw: DatasetDict, task: Task, data_args, model_args, base_config, do_train: bool):
    """No label vocabulary: the targets are text. Both columns must be text, and no target empty."""
    for split, dataset in raw.items():
        for column, flag in task.column_flags(data_args).items():
            feature = dataset.features[column]
            if not (isinstance(feature, Value) and feature.dtype in ("string", "large_string")):
                raise DataError(f"Column {column!r} ({flag}) of the {split} split holds {feature}, not text.")
        _, target_column = task.column_flags(data_args)
        empty = [row for row, text in enumerate(dataset[target_column]) if not (text and text.strip())]
        if empty:
            raise DataError(
                f"{len(empty)} row(s) of the {split} split have an empty target in column {target_column!r} (first: "
                f"row {empty[0]}): a model cannot learn to translate into nothing. Drop or fix those rows."
            )
    return raw, {}


def stratify_column(task: Task, data_args) -> None:
    return None  # a held-out validation split is a random sample of the pairs


def tokenize_for_translation(
    splits, tokenizer, source_column, target_column, max_length, training_args, num_proc=None, **_
) -> DatasetDict:
    """The labels are the target's tokens ending in </s> (which teaches the decoder where a translation stops; a
    tokenizer made for causal LMs adds none) and without a leading <s> (the decoder's start token is its input)."""

    def encode(batch):
        encoded = tokenizer(batch[source_column], truncation=True, max_length=max_length)
        targets = tokenizer(batch[target_column], truncation=True, max_length=max_length - 1)["input_ids"]
        encoded["labels"] = [target_labels(ids, tokenizer) for ids in targets]
        return encoded

    with training_args.main_process_first(desc="tokenizing"):
        return map_replacing_columns(splits, encode, num_proc)


def target_labels(ids: list[int], tokenizer) -> list[int]:
    ids = ids[1:] if ids and ids[0] == tokenizer.bos_token_id else ids
    return ids if ids and ids[-1] == tokenizer.eos_token_id else [*ids, tokenizer.eos_token_id]


def translation_scores(predictions: list[str], references: list[str], sacrebleu=None) -> dict[str, float]:
    scores = (sacrebleu or load_metric("sacrebleu")).compute(predictions=predictions, references=references)
    return {"bleu": scores["bleu"], "chrf": scores["chrf"]}


def decode(tokenizer, ids) -> list[str]:
    ids = np.asarray(ids)
    return [
        text.strip()
        for text in tokenizer.batch_decode(
            np.where(ids == IGNORE_INDEX, tokenizer.pad_token_id, ids), skip_special_tokens=True
        )
    ]


def compute_metrics(config, tokenizer):
    """BLEU and chrF of the generated translations against the targets; `num_rows` counts the pairs scored."""
    sacrebleu = load_metric("sacrebleu")

    def compute(eval_prediction: EvalPrediction) -> dict[str, float]:
        predictions = eval_prediction.predictions
        predictions = predictions[0] if isinstance(predictions, tuple) else predictions
        references = decode(tokenizer, eval_prediction.label_ids)
        scores = translation_scores(decode(tokenizer, predictions), references, sacrebleu)
        return {**scores, "num_rows": len(references)}

    return compute


def copy_source(raw, encoded, split: str, data_args, config, tokenizer) -> dict[str, float]:
    """The source as its own translation: what names, numbers and shared words alone score."""
    source, target = data_args.source_column, data_args.target_column
    return translation_scores(raw[split][source], raw[split][target])


def nearest_neighbour(raw, encoded, split: str, data_args, config, tokenizer) -> dict[str, float]:
    """A translation memory: the target of the training pair whose source is nearest (cosine of the TF-IDF of
    character 2-4-grams within words, which match across inflections and spelling variants)."""
    source, target = data_args.source_column, data_args.target_column
    vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True)
    memory = vectorizer.fit_transform(raw["train"][source])
    queries = vectorizer.transform(raw[split][source])
    nearest = np.asarray((queries @ memory.T).argmax(axis=1)).reshape(-1)
    return translation_scores([raw["train"][target][i] for i in nearest], raw[split][target])


def word_by_word(raw, encoded, split: str, data_args, config, tokenizer) -> dict[str, float]:
    """A dictionary learnt from the training pairs: each source word becomes the target word it co-occurs with most
    (Dice coefficient over pairs, lower-cased words); words it never saw are copied. No reordering."""
    source, target = data_args.source_column, data_args.target_column
    dictionary = dice_dictionary(raw["train"][source], raw["train"][target])

    def translate(text: str) -> str:  # punctuation back against the word before it, as the targets write it
        return re.sub(r" ([.,;:!?)])", r"\1", " ".join(dictionary.get(word, word) for word in words(text)))

    return translation_scores([translate(text) for text in raw[split][source]], raw[split][target])


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def dice_dictionary(sources: list[str], targets: list[str]) -> dict[str, str]:
    """source word -> the target word with the highest 2·c(s,t) / (c(s) + c(t)), counts of pairs holding them."""
    pair_counts, source_counts, target_counts = Counter(), Counter(), Counter()
    for source_text, target_text in zip(sources, targets):
        source_words, target_words = set(words(source_text)), set(words(target_text))
        source_counts.update(source_words)
        target_counts.update(target_words)
        pair_counts.update((s, t) for s in source_words for t in target_words)
    best: dict[str, tuple[float, str]] = {}
    for (s, t), count in pair_counts.items():
        score = 2 * count / (source_counts[s] + target_counts[t])
        if score > best.get(s, (0.0, ""))[0]:
            best[s] = (score, t)
    return {s: t for s, (_, t) in best.items()}


BASELINES = {"copy_source": copy_source, "nearest_neighbour": nearest_neighbour, "word_by_word": word_by_word}


class Seq2SeqTrainerScoringEachPairOnce(Seq2SeqTrainer):
    """Seq2SeqTrainer gathers what the processes generated with `accelerator.gather` (for `num_return_sequences`
    > 1, transformers #27025), which keeps the rows an uneven split repeats to keep processes in step: under DDP,
    15 validation pairs were scored as 16. With one translation per source, gather as Trainer does and drop the
    repeats (`gather_for_metrics`)."""

    def __setattr__(self, name, value):
        one_per_source = (
            (self.model.generation_config.num_return_sequences or 1) == 1 if name == "gather_function" else False
        )
        if one_per_source and value == self.accelerator.gather:
            value = self.accelerator.gather_for_metrics
        super().__setattr__(name, value)
