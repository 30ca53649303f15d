"""Load saved checkpoints as someone without this repository would, and use them.

    python training/load_without_package.py --classifier outputs/demo/classifier --language_model outputs/demo/pretrain
    python training/load_without_package.py --image_classifier outputs/image-demo/hub/classifier --images a.png b.png
    python training/load_without_package.py --translator outputs/translation-demo/hub/translator --sentences "Hola."

Run as a file in a fresh interpreter (the demo runs it from another directory): `import custom_transformer`
is made to fail (training/without_package.py) before anything else is imported, so the models can only come
from the code saved in the checkpoints, through `trust_remote_code=True`.
"""

import argparse
import sys

import torch  # noqa: E402
import without_package  # noqa: F401, I001 - first: `import custom_transformer` fails from here on
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer, pipeline  # noqa: E402

# Written for this demo, one in the manner of each category (none of them is in the data).
EXAMPLES = [
    "A coder who lived in Carlisle\nWrote programs with plenty of style;\n\tThey compiled on the first,\n"
    "\tThen the build server burst,\nAnd he hasn't been seen for a while.",
    "Any program that works on the first try was tested on the wrong data.",
    '"Captain, the shields will not hold much longer!"\n\t\t-- Scotty, stardate 4211.8',
    "Yow!  Are we having FUN yet, or is this the LINE for the ELECTRIC WAFFLE IRON?",
]
PROMPTS = ["Murphy's Law", "There once was a", "Yow!"]


def classify(folder: str):
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
    model = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True).eval()
    print(f"classifier: {type(model).__module__}.{type(model).__name__}")
    with torch.no_grad():
        probabilities = model(**tokenizer(EXAMPLES, padding=True, return_tensors="pt")).logits.softmax(-1)
    for text, p in zip(EXAMPLES, probabilities):
        label = model.config.id2label[int(p.argmax())]
        print(f"  {label:>10} ({p.max():.2f})  {text.splitlines()[0][:70]!r}")


def generate(folder: str, seed: int = 0):
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
    model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True).eval()
    print(f"language model: {type(model).__module__}.{type(model).__name__}")
    torch.manual_seed(seed)
    for prompt in PROMPTS:
        inputs = tokenizer(prompt, return_tensors="pt")
        output = model.generate(**inputs, max_new_tokens=40, do_sample=True, top_k=40, temperature=0.8)
        text = tokenizer.decode(output[0], skip_special_tokens=True)
        print("  " + text.replace("\n", "\n  ") + "\n  ---")


def classify_images(folder: str, images: list[str]):
    """transformers' own image processor (no remote code) and the checkpoint's model, through the pipeline."""
    classify = pipeline("image-classification", model=folder, trust_remote_code=True)
    print(
        f"image classifier: {type(classify.model).__module__}.{type(classify.model).__name__}, processor "
        f"{type(classify.image_processor).__name__}"
    )
    for path, (best, *_) in zip(images, classify(images)):
        print(f"  {best['label']:>12} ({best['score']:.2f})  {path.rsplit('/', 1)[-1]}")


def translate(folder: str, sentences: list[str]):
    """The `translation` pipeline transformers 5 removed, as the checkpoint ships it (config.custom_pipelines)."""
    translator = pipeline("translation", model=folder, trust_remote_code=True)
    print(
        f"translator: {type(translator.model).__module__}.{type(translator.model).__name__}, {type(translator).__name__}"
    )
    for sentence, (answer,) in zip(sentences, translator(sentences, max_new_tokens=96)):
        print(f"  {sentence}\n    -> {answer['translation_text']}")


def main(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classifier", help="A sequence-classification checkpoint folder.")
    parser.add_argument("--language_model", help="A causal-LM checkpoint folder.")
    parser.add_argument("--image_classifier", help="An image-classification checkpoint folder.")
    parser.add_argument("--images", nargs="*", default=[], help="Pictures for --image_classifier.")
    parser.add_argument("--translator", help="A translation (encoder-decoder) checkpoint folder.")
    parser.add_argument("--sentences", nargs="*", default=[], help="Sentences for --translator.")
    args = parser.parse_args(argv)
    if args.classifier:
        classify(args.classifier)
    if args.language_model:
        generate(args.language_model)
    if args.image_classifier:
        classify_images(args.image_classifier, args.images)
    if args.translator:
        translate(args.translator, args.sentences)
    assert without_package.BLOCKED not in sys.modules, "custom_transformer was imported"
    print("custom_transformer was never imported: the checkpoints carry their own code.")


if __name__ == "__main__":
    main()
