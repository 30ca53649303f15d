"""Small data, a tiny tokenizer and a tiny checkpoint for the tests of the `training` scripts.

Everything is made by the tests themselves in a temporary folder: synthetic sentences (a word list, fixed
seed), a byte-level BPE tokenizer trained on them, and a 2-layer hidden-32 Llama-preset checkpoint.
"""

import json
import random
from pathlib import Path

from custom_transformer import CustomTransformerConfig, CustomTransformerForCausalLM
from training.train_tokenizer import build_tokenizer

WORDS = "the a cat dog sat ran on under mat log big small red blue quickly slowly and then".split()
TINY_MODEL = "hidden_size=32,num_hidden_layers=2,num_attention_heads=4,num_key_value_heads=2,intermediate_size=64,max_position_embeddings=64"


def sentences(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12))).capitalize() + "." for _ in range(n)]


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return str(path)


def write_text_corpus(folder: Path) -> dict[str, str]:
    """Language-modelling text: train.txt and validation.txt, one paragraph per blank-line-separated sentence."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for split, n, seed in (("train", 240, 0), ("validation", 40, 1)):
        files[split] = str(folder / f"{split}.txt")
        Path(files[split]).write_text("\n\n".join(sentences(n, seed)) + "\n", encoding="utf-8")
    return files


def label_of(text: str) -> str:
    """A learnable label: whether the sentence mentions a cat or a dog more."""
    words = text.lower().rstrip(".").split()
    return "cat" if words.count("cat") >= words.count("dog") else "dog"


def write_classification_data(folder: Path, sizes=(("train", 64), ("validation", 21), ("test", 23))) -> dict[str, str]:
    """JSON-lines with string labels; 21 validation rows, so two processes cannot split them evenly."""
    files = {}
    for seed, (split, n) in enumerate(sizes):
        rows = [{"text": text, "label": label_of(text)} for text in sentences(n, seed + 10)]
        files[split] = write_jsonl(folder / f"{split}.jsonl", rows)
    return files


def write_token_data(folder: Path) -> dict[str, str]:
    """Word lists tagged ANIMAL / COLOUR / O."""
    tags = {"cat": "ANIMAL", "dog": "ANIMAL", "red": "COLOUR", "blue": "COLOUR"}
    files = {}
    for seed, (split, n) in enumerate((("train", 48), ("validation", 16))):
        rows = []
        for text in sentences(n, seed + 20):
            words = text.rstrip(".").lower().split()
            rows.append({"tokens": words, "tags": [tags.get(w, "O") for w in words]})
        files[split] = write_jsonl(folder / f"{split}.jsonl", rows)
    return files


def question_answering_rows(n: int, seed: int) -> list[dict]:
    """SQuAD-style rows about two animals in a passage: where one of them sat or ran, answered by one word of it."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        first, second = rng.choice(("big", "small")), rng.choice(("red", "blue"))
        places = rng.sample(("mat", "log", "mat", "log"), 2)
        opening = f"The {first} cat sat on the "
        middle = f"{places[0]}. The {second} dog ran under the "
        context = f"{opening}{middle}{places[1]}."
        if rng.random() < 0.5:
            question, answer, start = "Where did the cat sit?", places[0], len(opening)
        else:
            question, answer, start = "Where did the dog run?", places[1], len(opening) + len(middle)
        rows.append({"question": question, "context": context, "answers": {"text": [answer], "answer_start": [start]}})
    return rows


def write_question_answering_data(folder: Path) -> dict[str, str]:
    sizes = (("train", 96), ("validation", 24), ("test", 24))
    return {
        split: write_jsonl(folder / f"{split}.jsonl", question_answering_rows(n, seed))
        for seed, (split, n) in enumerate(sizes)
    }


# A toy second language: each word of WORDS has its own word, in the same order (so a translation is learnable in
# seconds, and copying the source scores nothing).
TRANSLATIONS = dict(
    zip(
        WORDS, "le un chat chien assis couru sur sous tapis bûche grand petit rouge bleu vite lentement et puis".split()
    )
)
# A tiny encoder-decoder (`--preset vaswani --config_overrides TINY_SEQ2SEQ`): at hidden 32 it took twice the steps
# to learn the toy language (loss 2.3 after 450 steps at lr 1e-3; hidden 64 at lr 2e-3: 0.12 after 300).
TINY_SEQ2SEQ = (
    "hidden_size=64,num_hidden_layers=2,decoder_layers=2,num_attention_heads=4,intermediate_size=128,"
    "max_position_embeddings=64,hidden_dropout=0.0"
)


def translated(sentence: str) -> str:
    return " ".join(TRANSLATIONS[word] for word in sentence.rstrip(".").lower().split()).capitalize() + "."


def write_translation_data(folder: Path, sizes=(("train", 240), ("validation", 16), ("test", 24))) -> dict[str, str]:
    """JSON-lines of {"source", "target"} pairs in the toy language, and a tokenizer trained on both sides."""
    files = {}
    for seed, (split, n) in enumerate(sizes):
        rows = [{"source": text, "target": translated(text)} for text in sentences(n, seed + 30)]
        files[split] = write_jsonl(folder / f"{split}.jsonl", rows)
    both_sides = [text for text in sentences(400, 98) for text in (text, translated(text))]
    build_tokenizer(both_sides, vocab_size=400, min_frequency=2, model_max_length=64).save_pretrained(
        folder / "tokenizer"
    )
    files["tokenizer"] = str(folder / "tokenizer")
    return files


QUADRANTS = ("north-west", "north-east", "south-west", "south-east")
# A tiny ViT for the 16x16 pictures below (`--preset vit --config_overrides TINY_VIT`).
TINY_VIT = "image_size=16,patch_size=4,hidden_size=32,num_hidden_layers=2,num_attention_heads=4,intermediate_size=64"


def quadrant_image(quadrant: int, rng):
    """A 16x16 RGB picture of dim noise with a bright 5x5 square somewhere in one quadrant: the class."""
    import numpy as np
    from PIL import Image

    pixels = rng.integers(0, 60, (16, 16, 3), dtype=np.uint8)
    top, left = 8 * (quadrant // 2) + rng.integers(0, 4), 8 * (quadrant % 2) + rng.integers(0, 4)
    pixels[top : top + 5, left : left + 5] = rng.integers(180, 256, (5, 5, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def write_image_folders(folder: Path, sizes=(("train", 24), ("validation", 6), ("test", 8))) -> dict[str, str]:
    """One image folder per split, a subfolder per class (the quadrant holding the square), PNG files."""
    import numpy as np

    rng = np.random.default_rng(0)
    for split, per_class in sizes:
        for quadrant, name in enumerate(QUADRANTS):
            (folder / split / name).mkdir(parents=True)
            for index in range(per_class):
                quadrant_image(quadrant, rng).save(folder / split / name / f"{index}.png")
    return {split: str(folder / split) for split, _ in sizes}


def write_idx(path: Path, array) -> None:
    """An idx file (gzip), as Fashion-MNIST ships them: zero, zero, the type (0x08: unsigned bytes), the dimension
    count, the sizes, the bytes."""
    import gzip

    import numpy as np

    header = bytes([0, 0, 8, array.ndim]) + b"".join(size.to_bytes(4, "big") for size in array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def write_fake_fashion_mnist(cache: Path, train: int = 200, test: int = 50) -> Path:
    """A Debian cache holding an unpacked dataset-fashion-mnist with `train` and `test` 28x28 pictures, the classes
    in turn; pixel values end in the class's digit, so a picture can be told by its pixels."""
    import numpy as np

    from training import image_data

    files = cache / image_data.PACKAGE / image_data.FILES
    files.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, count in (("train", train), ("t10k", test)):
        labels = np.arange(count) % 10
        images = rng.integers(0, 25, (count, 28, 28)) * 10 + labels[:, None, None]
        write_idx(files / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(files / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return files


def make_tokenizer(folder: Path, vocab_size: int = 320):
    tokenizer = build_tokenizer(sentences(400, 99), vocab_size=vocab_size, min_frequency=2, model_max_length=64)
    tokenizer.save_pretrained(folder)
    return tokenizer


def make_base_checkpoint(folder: Path, tokenizer) -> str:
    """A randomly initialised tiny causal LM saved with its tokenizer: what fine-tuning starts from."""
    overrides = dict(item.split("=") for item in TINY_MODEL.split(","))
    config = CustomTransformerConfig.from_preset(
        "llama",
        **{key: int(value) for key, value in overrides.items()},
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    CustomTransformerForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def make_workspace(root: Path) -> dict:
    """What the training tests start from: a tokenizer, a base checkpoint, and text, label and tag data."""
    tokenizer = make_tokenizer(root / "tokenizer")
    return {
        "root": root,
        "tokenizer": str(root / "tokenizer"),
        "checkpoint": make_base_checkpoint(root / "checkpoint", tokenizer),
        "text": write_text_corpus(root / "text"),
        "classification": write_classification_data(root / "classification"),
        "tokens": write_token_data(root / "tokens"),
        "question_answering": write_question_answering_data(root / "question_answering"),
    }


def read_json(path: str | Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


# Trainer flags every test run shares: CPU, quiet, no integrations, deterministic.
FAST = [
    "--use_cpu",
    "true",
    "--report_to",
    "none",
    "--disable_tqdm",
    "true",
    "--seed",
    "0",
    "--dataloader_pin_memory",
    "false",
]
