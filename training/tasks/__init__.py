"""What a task is, once: the registry every script and `model_cards` reads.

`TASKS` is keyed by the pipeline tag (the `task` of `run_info.json`, `--task` of `training.finetune`, the
card's `pipeline_tag`). Adding a task is a row here: its Hub name, Auto class (which names the head:
`AutoModelForCausalLM` -> `...ForCausalLM`), collator, metrics, baselines and card wording, and the processor its
inputs go through (`PROCESSORS`: a tokenizer, an image processor, ...); a fine-tuning task also names its columns
and the module beside this one that holds its own code (`classification.py`: how labels are read, inputs built,
predictions scored and baselines run), which `training.finetune` calls; the scripts and the cards follow.

The transformers classes and the task modules are named, not imported (as in transformers' own Auto mappings), so
that reading the table needs neither torch nor `datasets`: `model_cards` writes cards without them.
`auto_model()`, `data_collator()`, `task_code()` and `preprocess()` resolve the names when a script runs.
"""

import importlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType, ModuleType


@dataclass(frozen=True)
class Processor:
    """What turns a task's raw inputs (text, images, audio) into model inputs, as transformers saves and loads it."""

    auto_class: str  # the transformers Auto class that loads it from a checkpoint
    config_file: str  # the file whose presence says a checkpoint carries one
    files: tuple[str, ...]  # every file (glob) it may save: a hub-ready folder keeps exactly these
    noun: str  # how an error names it


PROCESSORS: dict[str, Processor] = {
    "tokenizer": Processor(
        "AutoTokenizer",
        "tokenizer_config.json",
        (
            "tokenizer.json",
            "tokenizer_config.json",
            "tokenizer.model",
            "*.spm",  # sentencepiece models (Marian's source.spm / target.spm)
            "special_tokens_map.json",
            "added_tokens.json",
            "vocab.*",
            "merges.txt",
            "chat_template.jinja",
        ),
        "tokenizer",
    ),
    "image_processor": Processor(
        "AutoImageProcessor", "preprocessor_config.json", ("preprocessor_config.json",), "image processor"
    ),
    "feature_extractor": Processor(
        "AutoFeatureExtractor", "preprocessor_config.json", ("preprocessor_config.json",), "feature extractor"
    ),
}


@dataclass(frozen=True)
class Column:
    """A data column a fine-tuning task reads, and the `--argument` of `training.finetune` that names it."""

    argument: str  # "text_column": the flag is --text_column
    default: str  # the column's name when the flag is not given
    help: str


@dataclass(frozen=True)
class Task:
    pipeline_tag: str  # the transformers pipeline / Hub task id, and the registry key
    pretty_name: str  # the Hub's task name, used in the card's model-index
    auto_class: str  # the transformers Auto class that loads the head
    collator: str  # the transformers data collator class
    metrics: tuple[str, ...]  # what run_info.json "metrics" holds for this task (besides num_rows)
    # The baselines scored next to the model on the same rows: a key of the task code's BASELINES -> the card's name.
    baselines: Mapping[str, str]
    intended_use: str  # the card's "Intended use" opening; {dataset} is the dataset's name
    example_call: str  # the card's pipeline call (without a pipeline: the lines that use the model)
    labels: str | None = None  # "sequence" or "token": one label per text or per word; None for language models
    columns: tuple[Column, ...] = ()  # fine-tuning: the columns it reads, inputs first, labels last
    code: str | None = None  # fine-tuning: the module with the task's own code (labels, inputs, metrics, baselines)
    # fine-tuning: the function of `code` building the model's inputs. Every one is called the same way, (splits,
    # processor, *columns, max_length=, training_args=, num_proc=, config=, data_args=), and reads what it needs.
    preprocess_function: str | None = None
    options: tuple[Column, ...] = ()  # fine-tuning: more `--<name>` arguments of its own (default and help as columns)
    collator_kwargs: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}))
    processor: str = "tokenizer"  # the key of PROCESSORS that prepares its inputs, saved with the model
    best_metric: str = "loss"  # fine-tuning: what early stopping and the best checkpoint watch on validation
    has_pipeline: bool = True  # transformers 5 has a pipeline for it (it removed question-answering's, translation's)
    # The trainer class: transformers' (Trainer), or a subclass in the task's code module; a Seq2SeqTrainer evaluates
    # what the model generates.
    trainer: str = "Trainer"
    head: str | None = None  # how the head's class name ends, where the Auto class's name does not say it
    ships_pipeline: bool = False  # its checkpoints carry its pipeline (custom_pipelines), loaded by name and code

    @property
    def head_suffix(self) -> str:
        """How the head's class name ends ("ForCausalLM"): finetune tells a checkpoint's own task by it."""
        return self.head or self.auto_class.removeprefix("AutoModel")

    @property
    def per_token(self) -> bool:
        return self.labels == "token"

    @property
    def fine_tunable(self) -> bool:
        return self.code is not None

    @property
    def processor_kind(self) -> Processor:
        return PROCESSORS[self.processor]

    @property
    def generates(self) -> bool:
        """Evaluated on what the model generates (`predict_with_generate`), not on its logits."""
        return issubclass(self.trainer_class(), importlib.import_module("transformers").Seq2SeqTrainer)

    def auto_model(self) -> type:
        return getattr(importlib.import_module("transformers"), self.auto_class)

    def trainer_class(self) -> type:
        module = self.code if self.code and hasattr(self.task_code(), self.trainer) else "transformers"
        return getattr(importlib.import_module(module), self.trainer)

    def data_collator(self, processor, **kwargs):
        """The collator, given the processor when it pads with one (a tokenizer), else without (images)."""
        collator_class = getattr(importlib.import_module("transformers"), self.collator)
        takes_processor = "tokenizer" in inspect.signature(collator_class).parameters
        return collator_class(*[processor] * takes_processor, **{**self.collator_kwargs, **kwargs})

    def task_code(self) -> ModuleType:
        """The task's own code: what `training.finetune` calls to read labels, build inputs, score and compare."""
        return importlib.import_module(self.code)

    def preprocess(self) -> Callable:
        return getattr(self.task_code(), self.preprocess_function)

    def column_flags(self, args) -> dict[str, str]:
        """{input column: the flag naming it, label column: its flag}, read from the parsed `args`."""
        return {getattr(args, column.argument): f"--{column.argument}" for column in self.columns}


CLASSIFICATION_METRICS = ("loss", "accuracy", "f1_macro")

TASKS: dict[str, Task] = {
    task.pipeline_tag: task
    for task in (
        Task(
            "text-classification",
            "Text Classification",
            "AutoModelForSequenceClassification",
            "DataCollatorWithPadding",
            CLASSIFICATION_METRICS,
            {"majority_class": "Majority class", "tfidf_logreg": "TF-IDF + logistic regression"},
            "Classifying texts like those of {dataset} into the labels listed above.",
            'pipe("Text to classify")',
            labels="sequence",
            columns=(Column("text_column", "text", "the text"), Column("label_column", "label", "the label")),
            code="training.tasks.classification",
            preprocess_function="tokenize_for_sequence_classification",
            best_metric="f1_macro",
        ),
        Task(
            "token-classification",
            "Token Classification",
            "AutoModelForTokenClassification",
            "DataCollatorForTokenClassification",
            CLASSIFICATION_METRICS,
            {"majority_class": "Majority class"},
            "Tagging the tokens of texts like those of {dataset} with the labels listed above.",
            'pipe("Text to tag")',
            labels="token",
            columns=(
                Column("tokens_column", "tokens", "the list of words"),
                Column("tags_column", "tags", "one tag per word"),
            ),
            code="training.tasks.classification",
            preprocess_function="tokenize_for_token_classification",
            best_metric="f1_macro",
        ),
        Task(
            "question-answering",
            "Question Answering",
            "AutoModelForQuestionAnswering",
            "DataCollatorWithPadding",
            ("loss", "exact_match", "f1"),
            {"sliding_window": "Sliding window (Rajpurkar et al. 2016)"},
            "Answering questions about passages like those of {dataset} with a span of the passage.",
            "\n".join(
                (
                    'inputs = tokenizer("Who wrote it?", "It was written by Ada.", return_tensors="pt")',
                    "outputs = model(**inputs)",
                    "start, end = outputs.start_logits.argmax(-1).item(), outputs.end_logits.argmax(-1).item()",
                    'print(tokenizer.decode(inputs["input_ids"][0, start : end + 1]))',
                )
            ),
            columns=(
                Column("question_column", "question", "the question"),
                Column("context_column", "context", "the passage"),
                Column("answers_column", "answers", '{"text": [...], "answer_start": [...]} (SQuAD\'s layout)'),
            ),
            code="training.tasks.question_answering",
            preprocess_function="tokenize_for_question_answering",
            best_metric="f1",
            has_pipeline=False,
        ),
        Task(
            "image-classification",
            "Image Classification",
            "AutoModelForImageClassification",
            "DefaultDataCollator",
            CLASSIFICATION_METRICS,
            {"majority_class": "Majority class", "pixel_logreg": "Logistic regression on pixels"},
            "Classifying images like those of {dataset} into the labels listed above.",
            'pipe("picture.png")',
            labels="sequence",
            columns=(Column("image_column", "image", "the image"), Column("label_column", "label", "the label")),
            options=(
                Column(
                    "augmentation",
                    "flip_and_shift",
                    "train-time augmentation: none, or flip_and_shift (a random horizontal flip and a shift by up to "
                    "1/8 of each side)",
                ),
            ),
            code="training.tasks.image_classification",
            preprocess_function="transform_for_image_classification",
            processor="image_processor",
            best_metric="f1_macro",
        ),
        Task(
            "translation",
            "Translation",
            "AutoModelForSeq2SeqLM",
            "DataCollatorForSeq2Seq",
            ("loss", "bleu", "chrf"),
            {
                "copy_source": "Copy of the source",
                "nearest_neighbour": "Nearest training source's target (TF-IDF)",
                "word_by_word": "Word-by-word dictionary (Dice, from the training pairs)",
            },
            "Translating sentences like those of {dataset} from the source language to the target language.",
            'pipe("Sentence to translate", max_new_tokens=64)',
            columns=(
                Column("source_column", "source", "the text to translate"),
                Column("target_column", "target", "its translation"),
            ),
            code="training.tasks.translation",
            preprocess_function="tokenize_for_translation",
            best_metric="bleu",
            has_pipeline=False,  # the checkpoint ships one (custom_pipelines): pipeline(..., trust_remote_code=True)
            trainer="Seq2SeqTrainerScoringEachPairOnce",
            head="ForConditionalGeneration",  # as BART's and ours are named
            ships_pipeline=True,
        ),
        Task(
            "text-generation",
            "Text Generation",
            "AutoModelForCausalLM",
            "DataCollatorForLanguageModeling",
            ("loss", "perplexity"),
            {"unigram": "Unigram"},
            "Generating text in the style of {dataset}.",
            'pipe("Once upon a time", max_new_tokens=20)',
            collator_kwargs=MappingProxyType({"mlm": False}),
        ),
        Task(
            "fill-mask",
            "Fill-Mask",
            "AutoModelForMaskedLM",
            "DataCollatorForLanguageModeling",
            ("loss", "perplexity"),
            {},
            "Predicting masked tokens in text like that of {dataset}, or as a starting point for fine-tuning.",
            'pipe(f"The {pipe.tokenizer.mask_token} is here.")',
            collator_kwargs=MappingProxyType({"mlm": True}),
        ),
    )
}
FINE_TUNING_TASKS = {tag: task for tag, task in TASKS.items() if task.fine_tunable}
