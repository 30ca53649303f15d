"""The tools people point at a Hugging Face model: pipelines, PEFT, Trainer checkpoints."""

import peft
import pytest
import torch
from helpers.models import tiny_config
from helpers.word_tokenizer import WORDS, save_with_tokenizer
from torch.testing import assert_close
from transformers import AutoModelForCausalLM, pipeline

from custom_transformer import (
    CustomTransformerForCausalLM,
    CustomTransformerForMaskedLM,
    CustomTransformerForSequenceClassification,
    CustomTransformerForTokenClassification,
)


@pytest.mark.parametrize(
    ("task", "model_class", "preset", "text"),
    [
        ("text-generation", CustomTransformerForCausalLM, "llama", "the cat sat"),
        ("fill-mask", CustomTransformerForMaskedLM, "bert", "the <mask> sat"),
        ("text-classification", CustomTransformerForSequenceClassification, "bert", "the cat sat"),
        ("token-classification", CustomTransformerForTokenClassification, "llama", "the cat sat"),
    ],
)
def test_pipelines_run_from_a_saved_folder(tmp_path, task, model_class, preset, text):
    torch.manual_seed(0)
    config = tiny_config(preset, vocab_size=len(WORDS), id2label={0: "NEG", 1: "POS"})
    folder = save_with_tokenizer(model_class(config), tmp_path)
    runner = pipeline(task, model=folder, trust_remote_code=True)
    extra = {"max_new_tokens": 4, "do_sample": False} if task == "text-generation" else {}
    result = runner(text, **extra)
    assert result, f"{task} returned nothing"
    if task == "text-generation":
        assert result[0]["generated_text"].startswith(text)
    if task == "text-classification":
        assert result[0]["label"] in {"NEG", "POS"}


def test_lora_adapters_train_save_and_reload(tmp_path):
    torch.manual_seed(0)
    base_folder = save_with_tokenizer(CustomTransformerForCausalLM(tiny_config("llama")), tmp_path / "base")
    model = peft.get_peft_model(
        AutoModelForCausalLM.from_pretrained(base_folder),
        peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"),
    )
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    input_ids = torch.randint(5, 99, (2, 8))
    for _ in range(3):
        loss = model(input_ids=input_ids, labels=input_ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.save_pretrained(tmp_path / "adapter")
    reloaded = peft.PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_folder), tmp_path / "adapter")
    model.eval(), reloaded.eval()
    assert_close(reloaded(input_ids=input_ids).logits, model(input_ids=input_ids).logits)
    merged = reloaded.merge_and_unload()
    assert_close(merged(input_ids=input_ids).logits, model(input_ids=input_ids).logits, atol=1e-5, rtol=1e-5)
