"""Train a byte-level BPE tokenizer on local text and save it as a folder `AutoTokenizer` loads.

    python -m training.train_tokenizer --train_files corpus.txt --output_dir tok --vocab_size 4096

Byte-level BPE never meets an unknown character; the special tokens are those the model heads and collators
need: <pad>, <s> (bos, prepended to every text), </s> (eos, ends each pre-training document), <unk>, <mask>.
The tokenizer has no Trainer, so its arguments are one dataclass (still `--help` and .json/.yaml files).
"""

import logging
from dataclasses import dataclass, field

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from .common import DataError, load_splits, parse_args, require_columns, require_rows, run_main

logger = logging.getLogger("training")

PAD, BOS, EOS, UNK, MASK = "<pad>", "<s>", "</s>", "<unk>", "<mask>"
SPECIAL_TOKENS = [
    *(AddedToken(token, special=True, normalized=False) for token in (PAD, BOS, EOS, UNK)),
    # lstrip: in "a <mask> b" the mask takes the word's space with it, as the fill-mask pipeline expects.
    AddedToken(MASK, lstrip=True, special=True, normalized=False),
]
# One turn per message, each opened by bos and closed by eos; a generation prompt opens the assistant's turn.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ bos_token }}{{ message['role'] }}\n{{ message['content'] }}{{ eos_token }}\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ bos_token }}assistant\n{% endif %}"
)


@dataclass
class TokenizerArguments:
    output_dir: str = field(metadata={"help": "Folder to write the tokenizer to."})
    train_files: list[str] | None = field(
        default=None, metadata={"help": "Text files: .txt, .json/.jsonl, .csv or .parquet."}
    )
    dataset_dir: str | None = field(default=None, metadata={"help": "A dataset saved with save_to_disk."})
    text_column: str = field(default="text", metadata={"help": "Column holding the text (json/csv/parquet)."})
    vocab_size: int = field(default=4096, metadata={"help": "Size of the vocabulary, special tokens included."})
    min_frequency: int = field(default=2, metadata={"help": "Merges seen fewer times than this are not learned."})
    model_max_length: int = field(default=1024, metadata={"help": "Longest input the tokenizer will announce."})


def build_tokenizer(texts, vocab_size: int, min_frequency: int, model_max_length: int) -> PreTrainedTokenizerFast:
    """Train BPE over bytes; every text starts with <s> (decoders and encoders alike read a defined first token)."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    bos_id, eos_id = tokenizer.token_to_id(BOS), tokenizer.token_to_id(EOS)
    tokenizer.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=True),  # offsets cover the word, not the space before it
            processors.TemplateProcessing(
                single=f"{BOS} $A", pair=f"{BOS} $A {EOS} $B:1", special_tokens=[(BOS, bos_id), (EOS, eos_id)]
            ),
        ]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        mask_token=MASK,
        model_max_length=model_max_length,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def main(argv: list[str] | dict | None = None) -> PreTrainedTokenizerFast:
    (args,) = parse_args((TokenizerArguments,), argv)
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.INFO)
    splits = load_splits({"train": args.train_files}, args.dataset_dir)
    require_rows(splits)
    require_columns(splits, {args.text_column: "--text_column"})
    if args.vocab_size <= len(SPECIAL_TOKENS) + 256:
        raise DataError(f"--vocab_size {args.vocab_size} leaves no room for merges: use more than 261 (256 bytes).")
    texts = splits["train"][args.text_column]
    tokenizer = build_tokenizer(texts, args.vocab_size, args.min_frequency, args.model_max_length)
    tokenizer.save_pretrained(args.output_dir)
    logger.info("Saved a %d-token byte-level BPE tokenizer to %s", len(tokenizer), args.output_dir)
    return tokenizer


if __name__ == "__main__":
    run_main(main)
