"""The README's "Works with" table: each row run on checkpoints loaded by path with their own code.

Checkpoints are built and saved once here, with what the model gives in this process. A fresh interpreter
where `custom_transformer` cannot be imported (`helpers/works_with_without_package.py`) then loads them with
`trust_remote_code=True`, runs every row and writes the numbers it saw, once under the project env and once
under the floor release (`MIN_TRANSFORMERS_VERSION`, a cached release site); tensor parallelism runs under
torchrun (`helpers/tensor_parallel_without_package.py`). Each test checks one row against this process's model.
`make works-with` (CT_WORKS_WITH_EVERY_RELEASE=1) also runs the rows under the newest patch of every 5.x minor,
CT_EXTRA_TRANSFORMERS_VERSIONS=5.25.0 under the releases it names.

Where the floor lacks a row, its floor test asserts the absence (so it fails, and says so, once the row works):
5.0's `DistributedConfig` has no `tp_plan`, and 5.0's continuous batching answers no model on CPU (Llama neither;
nor under 5.3 and 5.4, which `make works-with` runs).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
from helpers.models import tiny_config
from helpers.side_packages import TORCHAO_SITE
from helpers.transformers_releases import index_marks, latest_patch_of_each_minor, release_env
from helpers.word_tokenizer import WORDS, save_with_tokenizer, word_tokenizer
from packaging.version import Version
from transformers import AutoModel, AutoModelForCausalLM, LlamaForCausalLM, ViTImageProcessorPil

from custom_transformer import (
    CustomTransformerForCausalLM,
    CustomTransformerForConditionalGeneration,
    CustomTransformerForImageClassification,
    CustomTransformerForMaskedLM,
    CustomTransformerForSequenceClassification,
    CustomTransformerForTokenClassification,
)
from custom_transformer.convert import convert
from custom_transformer.transformers_compat import MIN_TRANSFORMERS_VERSION

HELPERS = Path(__file__).parent / "helpers"
RELEASES = {"project-env": transformers.__version__, "floor": MIN_TRANSFORMERS_VERSION}
if os.environ.get("CT_WORKS_WITH_EVERY_RELEASE"):  # `make works-with`: each 5.x minor's newest patch as well
    RELEASES |= {version: version for version in latest_patch_of_each_minor() if version not in RELEASES.values()}
# More releases on request, as in test_remote_code.py, e.g. CT_EXTRA_TRANSFORMERS_VERSIONS=5.25.0
RELEASES |= {v: v for v in filter(None, os.environ.get("CT_EXTRA_TRANSFORMERS_VERSIONS", "").split(","))}
MAX_NEW_TOKENS = 6
# Weights 15x the default scale, so greedy tokens depend on the whole prompt (as in the checkpoint contract).
INIT = {"initializer_range": 0.3}
# LoRA adapters trained here, by the layers they adapt: every linear layer, and the named pair of the LoRA paper.
LORA = {"all-linear": "all-linear", "q-and-v": ["q_proj", "v_proj"]}


def ids(sentence: str) -> list[int]:
    return [WORDS.index(word) for word in sentence.split()]


def padded(sentences: list[str], left: bool) -> dict[str, list[list[int]]]:
    """Token ids and mask of a batch, padded with id 0 on the left (for generation) or on the right."""
    rows = [ids(sentence) for sentence in sentences]
    width = max(map(len, rows))
    batch = {"input_ids": [], "attention_mask": []}
    for row in rows:
        pad = [0] * (width - len(row))
        batch["input_ids"].append(pad + row if left else row + pad)
        batch["attention_mask"].append([0] * len(pad) + [1] * len(row) if left else [1] * len(row) + [0] * len(pad))
    return batch


def tensors(batch: dict) -> dict[str, torch.Tensor]:
    return {key: torch.tensor(value) for key, value in batch.items()}


CASES = {
    "batch": padded(["the cat sat on a big mat", "a dog ran far away"], left=False),
    "other_shape": padded(["big dog", "the small cat sat", "a mat"], left=False),  # another batch size and length
    "prompt": padded(["the cat sat on a", "dog ran"], left=True),
    "single_prompt": padded(["the cat sat on the mat a cat sat on the"], left=False),  # n-grams to look up
    "requests": [ids("the cat sat on a"), ids("dog ran")],  # continuous batching: two lengths, no padding
    "paged_cache": {"num_blocks": 16, "max_batch_tokens": 64},  # else sized from free RAM: 3x slower here
    "chat": [
        {"role": "user", "content": "the dog ran"},
        {"role": "assistant", "content": "far away"},
        {"role": "user", "content": "a big cat sat"},
    ],
    "sentence": "a big cat sat",
    "masked_sentence": "the <mask> sat on a mat",
    "premise": "the dog ran far away",
    "candidate_labels": ["cat", "dog", "mat"],
    "zero_shot_options": {"hypothesis_template": "the {}"},
    "max_new_tokens": MAX_NEW_TOKENS,
    "cpu_budget": "30KB",  # room for the embeddings: the layers, the final norm and the head go to disk
    "max_shard_size": "20KB",
}
# Three 20x24 RGB images: the processor resizes them to the model's 16x16.
IMAGES = np.random.default_rng(0).integers(0, 256, (3, 20, 24, 3), dtype=np.uint8).tolist()
ANIMALS = {0: "cat", 1: "dog", 2: "owl"}
GREEDY = {"do_sample": False, "max_new_tokens": MAX_NEW_TOKENS, "min_new_tokens": MAX_NEW_TOKENS}
# One prompt, stopping at eos (the runner's prompt lookup and assisted generation cannot take min_new_tokens on 5.0).
UP_TO = {"do_sample": False, "max_new_tokens": MAX_NEW_TOKENS}
NO_EOS = {**UP_TO, "eos_token_id": -1, "pad_token_id": 0}


# --- built once: checkpoints, and what their models give in this process -----------------------------------------


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("works-with")
    torch.manual_seed(0)
    causal = CustomTransformerForCausalLM(tiny_config("llama", vocab_size=len(WORDS), **INIT)).eval()
    torch.manual_seed(1)
    draft = CustomTransformerForCausalLM(tiny_config("llama", vocab_size=len(WORDS), num_hidden_layers=1, **INIT))
    # label2id too: 5.24's config does not derive it from id2label, and zero-shot looks "entailment" up there.
    labels = {0: "entailment", 1: "neutral", 2: "contradiction"}
    torch.manual_seed(2)
    classifier = CustomTransformerForSequenceClassification(
        tiny_config("bert", vocab_size=len(WORDS), id2label=labels, label2id={v: k for k, v in labels.items()}, **INIT)
    ).eval()
    torch.manual_seed(3)
    masked = CustomTransformerForMaskedLM(tiny_config("bert", vocab_size=len(WORDS), **INIT)).eval()
    torch.manual_seed(4)
    tags = {0: "NOUN", 1: "VERB", 2: "OTHER"}
    tagger = CustomTransformerForTokenClassification(
        tiny_config("llama", vocab_size=len(WORDS), id2label=tags, label2id={v: k for k, v in tags.items()}, **INIT)
    ).eval()
    torch.manual_seed(5)
    image_classifier = CustomTransformerForImageClassification(
        tiny_config("vit", id2label=ANIMALS, label2id={v: k for k, v in ANIMALS.items()}, **INIT)
    ).eval()
    torch.manual_seed(6)  # an encoder-decoder whose decoder starts from <s>
    translator = CustomTransformerForConditionalGeneration(
        tiny_config("vaswani", vocab_size=len(WORDS), decoder_start_token_id=1, **INIT)
    ).eval()
    cases = {
        **CASES,
        "causal": save_with_tokenizer(causal, root / "causal"),
        "draft": save_with_tokenizer(draft, root / "draft"),
        "classifier": save_with_tokenizer(classifier, root / "classifier"),
        "masked": save_with_tokenizer(masked, root / "masked"),
        "tagger": save_with_tokenizer(tagger, root / "tagger"),
        "translator": save_with_tokenizer(translator, root / "translator"),
        "lora": {
            name: {"adapter": str(root / name / "adapter"), "merged": str(root / name / "merged")} for name in LORA
        },
        "llama": str(root / "llama"),  # the causal checkpoint as transformers' own LlamaForCausalLM
        "image_classifier": save_with_image_processor(image_classifier, root / "image_classifier"),
        "images": IMAGES,
        "image_lora": str(root / "image-lora"),
    }
    llama = convert(cases["causal"], cases["llama"], to_family="llama").eval()
    expected = {
        "logits": logits_of(causal, CASES["batch"]),
        "other_shape": logits_of(causal, CASES["other_shape"]),
        "lora": {name: train_lora(cases, name) for name in LORA},
        "bfloat16": bfloat16_runs(cases["causal"], cases["llama"]),
        "pipelines": pipeline_outputs(cases, causal, classifier, masked, tagger, translator),
        "images": image_outputs(cases, image_classifier),
        **generations(causal, llama),
    }
    return {"cases": cases, "expected": expected, "workdir": root / "runs"}


def logits_of(model, batch: dict) -> torch.Tensor:
    with torch.no_grad():
        return model(**tensors(batch), use_cache=False).logits


def new_tokens(output: torch.Tensor) -> list[list[int]]:
    return output[:, -MAX_NEW_TOKENS:].tolist()


def train_lora(cases: dict, name: str) -> dict:
    """LoRA on the layers `LORA[name]` names, three steps; saves the adapter and the merged model, returns their
    numbers."""
    import peft

    model = peft.get_peft_model(
        AutoModelForCausalLM.from_pretrained(cases["causal"]),
        peft.LoraConfig(r=4, lora_alpha=8, target_modules=LORA[name], task_type="CAUSAL_LM"),
    )
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    input_ids = torch.tensor(CASES["batch"]["input_ids"])
    for _ in range(3):
        model(input_ids=input_ids, labels=input_ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    folders = cases["lora"][name]
    model.eval().save_pretrained(folders["adapter"])
    adapted = logits_of(model, CASES["batch"])
    adapted_layers = sorted(
        module.removesuffix(".lora_A") for module, _ in model.named_modules() if module.endswith("lora_A")
    )
    merged = model.merge_and_unload()
    merged.save_pretrained(folders["merged"])
    return {"logits": adapted, "merged_logits": logits_of(merged, CASES["batch"]), "adapted_layers": adapted_layers}


def bfloat16_runs(folder: str, llama_folder: str) -> dict:
    """Logits and greedy tokens of the checkpoint loaded in bf16 here, and of its transformers Llama twin in bf16."""
    runs = {}
    for name, model_class, path in [
        ("model", CustomTransformerForCausalLM, folder),
        ("llama", LlamaForCausalLM, llama_folder),
    ]:
        model = model_class.from_pretrained(path, dtype=torch.bfloat16).eval()
        with torch.no_grad():
            generated = model.generate(**tensors(CASES["prompt"]), **GREEDY)
        runs[name] = {"logits": logits_of(model, CASES["batch"]), "generated": new_tokens(generated)}
    return runs


def generations(causal, llama) -> dict:
    """Greedy and beam-search tokens of the model, and transformers' Llama's beams on the same weights."""
    prompt, single = tensors(CASES["prompt"]), tensors(CASES["single_prompt"])
    with torch.no_grad():
        return {
            "greedy": new_tokens(causal.generate(**prompt, **GREEDY)),
            "greedy_single": causal.generate(**single, **UP_TO)[:, single["input_ids"].shape[1] :].tolist(),
            "beam_search": new_tokens(causal.generate(**prompt, num_beams=3, **GREEDY)),
            "beam_search_llama": new_tokens(llama.generate(**prompt, num_beams=3, **GREEDY)),
            "next_token_logits": causal(**single, use_cache=False).logits[:, -1:],
            # Never stopping (eos -1), as the runner's continuous batching is told: eos may come and go on.
            "requests": [new_tokens(causal.generate(torch.tensor([r]), **NO_EOS))[0] for r in CASES["requests"]],
        }


def pipeline_outputs(cases: dict, causal, classifier, masked, tagger, translator) -> dict:
    """What each pipeline must give, computed from the models directly."""
    tokenizer = word_tokenizer()
    chat = tokenizer.apply_chat_template(
        CASES["chat"], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    sentence = tokenizer(CASES["sentence"], return_tensors="pt")
    with torch.no_grad():
        reply = causal.generate(**chat, do_sample=False, max_new_tokens=MAX_NEW_TOKENS)
        continued = causal.generate(**sentence, do_sample=False, max_new_tokens=MAX_NEW_TOKENS)
        base = AutoModel.from_pretrained(cases["causal"]).eval()  # the causal checkpoint's backbone
        features = base(**sentence).last_hidden_state
        entailment = []
        for label in CASES["candidate_labels"]:
            hypothesis = CASES["zero_shot_options"]["hypothesis_template"].format(label)
            pair = tokenizer(CASES["premise"], hypothesis, return_tensors="pt")
            entailment.append(classifier(**pair).logits[0, classifier.config.label2id["entailment"]])
        with_mask = tokenizer(CASES["masked_sentence"], return_tensors="pt")
        at_mask = masked(**with_mask).logits[with_mask["input_ids"] == tokenizer.mask_token_id][0].softmax(-1)
        classes = classifier(**sentence).logits[0].softmax(-1)
        tags = tagger(**sentence).logits[0].softmax(-1).max(-1)
        translated = translator.generate(**sentence, do_sample=False, max_new_tokens=MAX_NEW_TOKENS)
    top = at_mask.topk(5)
    labels, words = classifier.config.id2label, tokenizer.convert_ids_to_tokens(sentence["input_ids"][0])
    return {
        "chat_reply": tokenizer.decode(reply[0, chat["input_ids"].shape[1] :], skip_special_tokens=True),
        "text_tokens": continued[0].tolist(),
        "features": features,
        "zero_shot": dict(zip(CASES["candidate_labels"], torch.stack(entailment).softmax(-1).tolist())),
        "fill_mask": [(tokenizer.decode([i]), score) for i, score in zip(top.indices.tolist(), top.values.tolist())],
        "text_classification": sorted(
            [{"label": labels[i], "score": score} for i, score in enumerate(classes.tolist())],
            key=lambda label: -label["score"],
        ),
        "token_classification": [
            (word, tagger.config.id2label[i], score)
            for word, i, score in zip(words, tags.indices.tolist(), tags.values.tolist())
        ],
        "translation": tokenizer.decode(translated[0], skip_special_tokens=True),
    }


def save_with_image_processor(model, folder: Path) -> str:
    """The checkpoint with transformers' own ViT image processor (PIL backend): 16x16, pixels scaled to [-1, 1]."""
    model.save_pretrained(folder)
    ViTImageProcessorPil(size={"height": 16, "width": 16}, image_mean=[0.5] * 3, image_std=[0.5] * 3).save_pretrained(
        folder
    )
    return str(folder)


def image_outputs(cases: dict, model) -> dict:
    """What the image rows must give: the processor's pixels, the model's logits and answers, its backbone's
    features, its bf16 logits, and a LoRA adapter trained here (attention queries and values, the classifier)."""
    import peft
    from PIL import Image

    images = [Image.fromarray(np.array(image, dtype=np.uint8)) for image in IMAGES]
    pixels = ViTImageProcessorPil.from_pretrained(cases["image_classifier"])(images, return_tensors="pt")[
        "pixel_values"
    ]
    with torch.no_grad():
        logits = model(pixels).logits
        features = AutoModel.from_pretrained(cases["image_classifier"]).eval()(pixel_values=pixels[:1])
        bf16 = CustomTransformerForImageClassification.from_pretrained(cases["image_classifier"], dtype=torch.bfloat16)
        bf16_logits = bf16.eval()(pixels.to(torch.bfloat16)).logits.float()
    top = logits.softmax(-1).topk(3)
    adapted = peft.get_peft_model(
        CustomTransformerForImageClassification.from_pretrained(cases["image_classifier"]),
        peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], modules_to_save=["score"]),
    )
    optimizer = torch.optim.AdamW([p for p in adapted.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(3):
        adapted(pixel_values=pixels, labels=torch.tensor([0, 1, 2])).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    adapted.eval().save_pretrained(cases["image_lora"])
    with torch.no_grad():
        adapted_logits = adapted(pixel_values=pixels).logits
    return {
        "pixel_values": pixels,
        "logits": logits,
        "classification": [
            [(ANIMALS[i], score) for i, score in zip(indices, scores)]
            for indices, scores in zip(top.indices.tolist(), top.values.tolist())
        ],
        "features": features.last_hidden_state,
        "bfloat16": bf16_logits,
        "lora": adapted_logits,
    }


# --- the fresh interpreters ----------------------------------------------------------------------------------------


def interpreter_env(release: str, workdir: Path) -> dict:
    """Offline, HF_HOME in `workdir`, the release's site first on the path (none: this venv's), then torchao."""
    env = release_env(RELEASES[release], hf_home=workdir / "hf-home")
    assert (TORCHAO_SITE / "torchao").is_dir(), f"torchao is not in {TORCHAO_SITE}: run `make install`"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [env.get("PYTHONPATH"), str(TORCHAO_SITE)]))
    return env


def run_rows(built: dict, release: str) -> dict:
    workdir = built["workdir"] / release
    (workdir / "scratch").mkdir(parents=True)
    cases_path, result_path = workdir / "cases.json", workdir / "result.json"
    cases_path.write_text(json.dumps({**built["cases"], "scratch": str(workdir / "scratch")}))
    proc = subprocess.run(
        [sys.executable, str(HELPERS / "works_with_without_package.py"), str(cases_path), str(result_path)],
        cwd=workdir,
        env=interpreter_env(release, workdir),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0 and result_path.exists(), proc.stderr[-4000:]
    result = json.loads(result_path.read_text())
    print(f"works-with rows under transformers {result['transformers_version']}, seconds: {result['seconds']}")
    assert result["transformers_version"] == RELEASES[release]
    assert result["package_blocked"] and result["loaded_module"].startswith("transformers_modules.")
    return result


@pytest.fixture(scope="module")
def results(built) -> dict:
    """release -> the runner's result, each run once, when a test first asks for it."""
    return {}


@pytest.fixture
def rows(built, results, release) -> dict:
    if release not in results:
        results[release] = run_rows(built, release)
    return results[release]


@pytest.fixture(params=[pytest.param(name, marks=index_marks(version)) for name, version in RELEASES.items()])
def release(request) -> str:
    return request.param


def row(rows: dict, name: str) -> dict:
    got = rows["rows"][name]
    assert "error" not in got, got["traceback"]
    return got


def max_diff(actual, expected) -> float:
    actual, expected = torch.as_tensor(actual, dtype=torch.float32), torch.as_tensor(expected, dtype=torch.float32)
    assert actual.shape == expected.shape
    return (actual - expected).abs().max().item()


def relative_error(actual, expected) -> float:
    actual, expected = torch.as_tensor(actual, dtype=torch.float32), torch.as_tensor(expected, dtype=torch.float32)
    return ((actual - expected).norm() / expected.norm()).item()


def report(release: str, row_name: str, **numbers):
    """Printed for the README's table (`pytest -s`)."""
    print(
        f"[{release}] {row_name}: "
        + ", ".join(f"{k} {v:.2g}" if isinstance(v, float) else f"{k} {v}" for k, v in numbers.items())
    )


# --- the rows ------------------------------------------------------------------------------------------------------


def test_a_checkpoint_loaded_without_the_package_gives_the_logits_of_the_model_in_this_process(built, rows, release):
    diff = max_diff(rows["logits"], built["expected"]["logits"])
    report(release, "remote code", max_abs_logit_diff=diff)
    assert diff <= 1e-6


def test_text_generation_pipeline_answers_chat_messages_with_the_reply_generate_gives(built, rows, release):
    got = row(rows, "pipelines")
    *history, reply = got["chat"]
    assert history == CASES["chat"] and reply["role"] == "assistant"
    assert got["chat_model_module"].startswith("transformers_modules.")
    assert reply["content"].strip() == built["expected"]["pipelines"]["chat_reply"]


def test_text_generation_pipeline_continues_text_with_the_tokens_generate_gives(built, rows, release):
    # Tokens, not text: how the full text joins prompt and reply changed after 5.0 (a space, with this tokenizer).
    got, expected = row(rows, "pipelines")["text_tokens"], built["expected"]["pipelines"]["text_tokens"]
    assert got == expected and len(got) > len(ids(CASES["sentence"]))


def test_fill_mask_pipeline_gives_the_masked_lms_five_likeliest_words(built, rows, release):
    got, expected = row(rows, "pipelines")["fill_mask"], built["expected"]["pipelines"]["fill_mask"]
    assert [word for word, _ in got] == [word for word, _ in expected]
    diff = max(abs(score - want) for (_, score), (_, want) in zip(got, expected))
    report(release, "fill-mask", max_abs_score_diff=diff)
    assert diff <= 1e-6


def test_text_classification_pipeline_gives_the_label_scores_by_id2label(built, rows, release):
    got = row(rows, "pipelines")["text_classification"]
    expected = built["expected"]["pipelines"]["text_classification"]
    assert [label["label"] for label in got] == [label["label"] for label in expected]
    diff = max(abs(label["score"] - want["score"]) for label, want in zip(got, expected))
    report(release, "text-classification", max_abs_score_diff=diff)
    assert diff <= 1e-6


def test_token_classification_pipeline_tags_each_word_with_its_likeliest_label(built, rows, release):
    got = row(rows, "pipelines")["token_classification"]
    expected = built["expected"]["pipelines"]["token_classification"]
    assert [(word, label) for word, label, _ in got] == [(word, label) for word, label, _ in expected]
    assert len({label for _, label, _ in got}) > 1  # the words are told apart
    diff = max(abs(score - want) for (*_, score), (*_, want) in zip(got, expected))
    report(release, "token-classification", max_abs_score_diff=diff)
    assert diff <= 1e-6


def test_feature_extraction_pipeline_gives_the_backbones_hidden_states(built, rows, release):
    got = row(rows, "pipelines")
    diff = max_diff(got["features"], built["expected"]["pipelines"]["features"])
    report(release, "feature-extraction", max_abs_diff=diff)
    assert got["features_model_class"] == "CustomTransformerModel" and diff <= 1e-6


def test_translation_pipeline_that_transformers_5_removed_comes_with_the_checkpoint_and_decodes_generate(
    built, rows, release
):
    """Also under `summarization` and `text2text-generation`, each answering under its transformers 4 key."""
    got = row(rows, "pipelines")
    expected = built["expected"]["pipelines"]["translation"]
    report(release, "translation pipeline", translation=got["translation"], expected=expected)
    assert expected and got["translation"] == expected
    assert got["summarization"] == [{"summary_text": expected}]
    assert got["text2text_generation"] == [{"generated_text": expected}]
    assert got["translation_pipeline_class"] == "Seq2SeqGenerationPipeline"


def test_zero_shot_classification_pipeline_ranks_labels_by_the_entailment_logit(built, rows, release):
    got = row(rows, "pipelines")
    expected = built["expected"]["pipelines"]["zero_shot"]
    assert got["zero_shot_model_class"] == "CustomTransformerForSequenceClassification"
    assert list(got["zero_shot"]) == sorted(expected, key=expected.get, reverse=True)
    diff = max(abs(got["zero_shot"][label] - score) for label, score in expected.items())
    report(release, "zero-shot", max_abs_score_diff=diff)
    assert diff <= 1e-6


def test_lora_on_all_linear_layers_adapts_every_projection_but_not_the_lm_head(built):
    adapted = built["expected"]["lora"]["all-linear"]["adapted_layers"]
    projections = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    assert len(adapted) == 2 * len(projections)  # two layers
    assert {name.rsplit(".", 1)[-1] for name in adapted} == set(projections)
    assert not any("lm_head" in name for name in adapted)


def test_lora_on_named_modules_adapts_only_those(built):
    adapted = built["expected"]["lora"]["q-and-v"]["adapted_layers"]
    assert [name.split(".layers.")[-1] for name in adapted] == [
        f"{layer}.self_attn.{projection}" for layer in (0, 1) for projection in ("q_proj", "v_proj")
    ]


@pytest.mark.parametrize("lora", list(LORA))
def test_merged_lora_model_and_the_adapter_load_without_the_package_with_the_peft_models_logits(
    built, rows, release, lora
):
    got, trained = row(rows, "peft")[lora], built["expected"]["lora"][lora]
    merged = max_diff(got["merged"], trained["merged_logits"])
    adapter = max_diff(got["adapter_on_base"], trained["logits"])
    report(
        release,
        f"peft {lora}",
        merged_vs_merged=merged,
        merged_vs_peft=max_diff(got["merged"], trained["logits"]),
        adapter=adapter,
    )
    assert merged <= 1e-6 and adapter <= 1e-6
    assert max_diff(got["merged"], trained["logits"]) <= 1e-5  # merging changes rounding only
    assert max_diff(trained["logits"], built["expected"]["logits"]) > 1e-3  # the adapter was trained


def test_onnx_dynamo_export_runs_in_onnxruntime_with_the_models_logits_at_other_shapes(built, rows, release):
    got, expected = row(rows, "onnx"), built["expected"]
    traced, other = max_diff(got["batch"], expected["logits"]), max_diff(got["other_shape"], expected["other_shape"])
    report(release, "onnx", traced_shape=traced, other_shape=other, export_s=got["export_s"])
    assert traced <= 1e-5 and other <= 1e-5


def test_torchao_int8_weight_only_is_within_five_percent_of_fp32_and_reloads_identically(built, rows, release):
    got = row(rows, "torchao")
    error = relative_error(got["quantized"], built["expected"]["logits"])
    report(release, "torchao int8", relative_error=error, reload_diff=max_diff(got["reloaded"], got["quantized"]))
    assert got["weight_type"] == got["reloaded_weight_type"] == "Int8Tensor"
    assert 1e-4 < error < 0.05  # quantized, and close
    assert got["reloaded"] == got["quantized"]
    assert {"model.safetensors", "modeling_custom_transformer.py"} <= set(got["saved_files"])


def test_device_map_auto_puts_layers_on_disk_and_gives_the_same_logits(built, rows, release):
    got = row(rows, "disk_offload")
    diff = max_diff(got["logits"], built["expected"]["logits"])
    report(release, "disk offload", max_abs_logit_diff=diff, device_map=got["device_map"])
    assert got["device_map"]["model.layers"] == got["device_map"]["lm_head"] == "disk"
    assert got["device_map"]["model.embed_tokens"] == "cpu"
    assert diff <= 1e-6


def test_bfloat16_load_computes_and_generates_like_the_model_and_transformers_llama_in_bfloat16(built, rows, release):
    got, expected = row(rows, "bfloat16"), built["expected"]["bfloat16"]
    error = relative_error(got["logits"], built["expected"]["logits"])
    report(release, "bf16", relative_error_vs_fp32=error)
    assert got["dtypes"] == ["torch.bfloat16"]
    assert (
        max_diff(got["logits"], expected["model"]["logits"])
        == max_diff(got["logits"], expected["llama"]["logits"])
        == 0.0
    )
    assert 0.0 < error < 0.05
    assert got["generated"] == expected["model"]["generated"] == expected["llama"]["generated"]


def test_a_checkpoint_saved_again_in_small_shards_reloads_identically(built, rows, release):
    got = row(rows, "sharded_resave")
    report(release, "sharded re-save", shards=got["shards"])
    assert got["shards"] > 1 and got["has_index"]
    assert max_diff(got["logits"], built["expected"]["logits"]) <= 1e-6


def test_set_attn_implementation_switches_remote_code_to_eager_and_back(built, rows, release):
    got = row(rows, "attn_implementation")
    switched = [got[step]["config"] for step in ("loaded", "eager", "sdpa")]
    diffs = {step: max_diff(got[step]["logits"], built["expected"]["logits"]) for step in ("eager", "sdpa")}
    report(release, "set_attn_implementation", backends=switched, **diffs)
    assert switched == ["sdpa", "eager", "sdpa"]
    assert max(diffs.values()) <= 1e-5


def test_a_static_cache_decode_step_compiles_fullgraph_and_exports_with_the_models_next_token_logits(
    built, rows, release
):
    got, expected = row(rows, "compiled_decode"), built["expected"]["next_token_logits"]
    diffs = {step: max_diff(got[step], expected) for step in ("compiled", "exported", "eager")}
    report(release, "compiled static-cache decode step", **diffs)
    assert max(diffs.values()) <= 1e-5


def test_vllm_and_sglang_accept_the_remote_code_model_as_a_transformers_backend(rows, release):
    assert row(rows, "serving_backends")["is_backend_compatible"] is True


# Releases whose continuous batching answers no model on CPU, transformers' own Llama included (seen by `make
# works-with`): 5.0 sizes the paged cache from the device's total memory, None on CPU; 5.3 and 5.4 pin memory.
CONTINUOUS_BATCHING_FAILS_ON_CPU = {"5.0": "total memory None", "5.3": "pin_memory", "5.4": "pin_memory"}


def test_continuous_batching_generates_the_greedy_tokens_of_each_request(built, rows, release):
    got = row(rows, "continuous_batching")
    report(release, "continuous batching", requests=len(got["model"]), llama_requests=len(got["llama"]))
    assert got["model"] == got["llama"]  # what transformers' own Llama gets, on every release
    minor = ".".join(RELEASES[release].split(".")[:2])
    if minor in CONTINUOUS_BATCHING_FAILS_ON_CPU:
        assert got["model"] == [], f"{RELEASES[release]} now batches on CPU: drop it from the list"
        if minor == "5.0":
            assert got["cpu_total_memory_seen"] is None
        return
    assert got["model"] == built["expected"]["requests"]


def test_beam_search_gives_the_beams_of_the_model_here_and_of_transformers_llama(built, rows, release):
    got, expected = row(rows, "generation"), built["expected"]
    assert expected["beam_search"] == expected["beam_search_llama"]
    assert got["beam_search"] == expected["beam_search"]
    assert expected["beam_search"] != expected["greedy"]  # the beams changed something


def test_prompt_lookup_and_assisted_generation_give_the_greedy_tokens(built, rows, release):
    got = row(rows, "generation")
    assert got["greedy"] == built["expected"]["greedy_single"] and len(got["greedy"][0]) == MAX_NEW_TOKENS
    assert got["prompt_lookup"] == got["assisted"] == got["greedy"]


def test_streamers_yield_the_text_of_the_greedy_tokens(built, rows, release):
    got = row(rows, "generation")
    text = word_tokenizer().decode(built["expected"]["greedy_single"][0], skip_special_tokens=True)
    assert len(got["iterator_streamer"]) > MAX_NEW_TOKENS // 2  # streamed in pieces, not at the end
    assert "".join(got["iterator_streamer"]) == text
    assert got["text_streamer"] == text + "\n"


# --- images --------------------------------------------------------------------------------------------------------


def image_pipelines_row(rows: dict, release: str) -> dict:
    """transformers 5.4 - 5.17 make `AutoImageProcessor` itself require torchvision (5.0 - 5.3 and 5.18+ fall back to
    PIL), so there the image pipelines need `pip install torchvision`: asserted, so the row says when it changes."""
    version = Version(RELEASES[release])
    if Version("5.4") <= version < Version("5.18"):
        error = rows["rows"]["image_pipelines"].get("error", "")
        assert "AutoImageProcessor requires the Torchvision library" in error, "runs without torchvision now: update"
        pytest.xfail(f"transformers {version}'s AutoImageProcessor requires torchvision, which is not installed")
    return row(rows, "image_pipelines")


def test_image_classification_pipeline_answers_with_transformers_own_image_processor(built, rows, release):
    got, expected = image_pipelines_row(rows, release), built["expected"]["images"]
    assert got["processor_class"] in ("ViTImageProcessor", "ViTImageProcessorPil")  # transformers' own: no remote code
    assert got["classifier_module"].startswith("transformers_modules.")
    assert max_diff(got["pixel_values"], expected["pixel_values"]) <= 1e-6
    assert [[label for label, _ in image] for image in got["classification"]] == [
        [label for label, _ in image] for image in expected["classification"]
    ]
    diff = max(
        abs(a - b) for x, y in zip(got["classification"], expected["classification"]) for (_, a), (_, b) in zip(x, y)
    )
    report(release, "image-classification", max_abs_score_diff=diff, processor=got["processor_class"])
    assert diff <= 1e-6


def test_image_feature_extraction_pipeline_gives_the_backbones_hidden_states(built, rows, release):
    got = image_pipelines_row(rows, release)
    diff = max_diff(got["features"], built["expected"]["images"]["features"])
    report(release, "image-feature-extraction", max_abs_diff=diff)
    assert got["features_model_class"] == "CustomTransformerModel" and diff <= 1e-6


def test_an_image_lora_adapter_loads_on_the_remote_code_base_with_the_peft_models_logits(built, rows, release):
    expected = built["expected"]["images"]
    diff = max_diff(row(rows, "image_peft")["logits"], expected["lora"])
    report(release, "image peft", adapter=diff)
    assert diff <= 1e-5
    assert max_diff(expected["lora"], expected["logits"]) > 1e-3  # the adapter was trained


def test_an_image_classifier_loads_in_bfloat16_with_the_logits_of_the_model_in_bfloat16(built, rows, release):
    got, expected = row(rows, "image_bfloat16"), built["expected"]["images"]
    error = relative_error(got["logits"], expected["logits"])
    report(release, "image bf16", relative_error_vs_fp32=error)
    assert got["dtypes"] == ["torch.bfloat16"]
    assert max_diff(got["logits"], expected["bfloat16"]) == 0.0
    assert 0.0 < error < 0.05


def test_an_image_classifier_quantizes_to_torchao_int8_within_five_percent_and_reloads_identically(
    built, rows, release
):
    got = row(rows, "image_int8")
    error = relative_error(got["quantized"], built["expected"]["images"]["logits"])
    report(release, "image torchao int8", relative_error=error)
    assert got["weight_type"] == "Int8Tensor"
    assert 1e-4 < error < 0.05
    assert got["reloaded"] == got["quantized"]


def test_an_image_classifier_exports_to_onnx_with_a_dynamic_batch(built, rows, release):
    got, expected = row(rows, "image_onnx"), built["expected"]["images"]["logits"]
    diffs = {"all": max_diff(got["all"], expected), "first": max_diff(got["first"], expected[:1])}
    report(release, "image onnx", **diffs)
    assert max(diffs.values()) <= 1e-5


def test_an_image_classifier_compiles_fullgraph_with_the_models_logits(built, rows, release):
    diff = max_diff(row(rows, "image_compile")["compiled"], built["expected"]["images"]["logits"])
    report(release, "image compile", max_abs_diff=diff)
    assert diff <= 1e-5


# --- tensor parallel: two processes ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tensor_parallel(built, results) -> list[dict]:
    """Both ranks' results of a tensor-parallel load under torchrun, in the project env."""
    if "project-env" not in results:
        results["project-env"] = run_rows(built, "project-env")
    # That run's HF_HOME holds the checkpoint's code already: both ranks read it (they would race to write it).
    env = interpreter_env("project-env", built["workdir"] / "project-env")
    workdir = built["workdir"] / "tensor-parallel"
    workdir.mkdir(parents=True)
    cases_path = workdir / "cases.json"
    cases_path.write_text(json.dumps(built["cases"]))
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    proc = subprocess.run(
        [*torchrun, str(HELPERS / "tensor_parallel_without_package.py"), str(cases_path), str(workdir / "rank")],
        cwd=workdir,
        env={**env, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return [json.loads((workdir / f"rank-{rank}.json").read_text()) for rank in range(2)]


def test_tensor_parallel_load_under_torchrun_matches_one_process(built, tensor_parallel):
    for rank in tensor_parallel:
        assert rank["world_size"] == 2 and rank["module"].startswith("transformers_modules.")
        assert (rank["q_proj_placements"], rank["q_proj_local_shape"]) == ("(Shard(dim=0),)", [16, 32])  # 32 rows
        diff = max_diff(rank["logits"], built["expected"]["logits"])
        report("project-env", "tensor parallel", max_abs_logit_diff=diff)
        assert diff <= 1e-5
        assert rank["generated"] == built["expected"]["greedy"]


@pytest.mark.index
@pytest.mark.parametrize("release", ["floor"])
def test_the_floor_release_lacks_distributed_config_tp_plan(rows, release):
    assert not rows["distributed_config_has_tp_plan"], "the floor has DistributedConfig(tp_plan=): run the row there"
