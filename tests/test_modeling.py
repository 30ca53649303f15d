"""The model contract: every head of every preset, the way transformers' own models are held to it."""

import pytest
import torch
import transformers
from helpers.models import (
    DECODER_PRESETS,
    ENCODER_PRESETS,
    PRESET_NAMES,
    build,
    heads_for,
    inputs_for,
    make_inputs,
    outputs_of,
    tiny_config,
)
from torch.testing import assert_close
from transformers import AutoModel, AutoModelForCausalLM, AutoModelForSequenceClassification

from custom_transformer import (
    CustomTransformerForCausalLM,
    CustomTransformerForImageClassification,
    CustomTransformerForMaskedLM,
    CustomTransformerForQuestionAnswering,
    CustomTransformerForSequenceClassification,
    CustomTransformerModel,
)
from custom_transformer.modeling_custom_transformer import HEADS, sinusoidal_table
from custom_transformer.refresh import code_files

HEAD_CASES = [(preset, auto) for preset in PRESET_NAMES for auto in heads_for(preset)]


# --- forward, attention backends, outputs ----------------------------------------------------------------------


@pytest.mark.parametrize(("preset", "auto_name"), HEAD_CASES)
def test_every_head_runs_and_returns_the_expected_shape(preset, auto_name):
    model = build(heads_for(preset)[auto_name], preset, num_labels=3)
    logits = outputs_of(model, **inputs_for(preset))
    positions = 7 if "input_ids" in inputs_for(preset) else 1 + 16  # 7 tokens, or [CLS] and 4x4 patches
    expected = {
        "AutoModel": (2, positions, 32),
        "AutoModelForCausalLM": (2, positions, 99),
        "AutoModelForMaskedLM": (2, positions, 99),
        "AutoModelForTokenClassification": (2, positions, 3),
        "AutoModelForSequenceClassification": (2, 3),
        "AutoModelForQuestionAnswering": (2, positions),
        "AutoModelForImageClassification": (2, 3),
        "AutoModelForSeq2SeqLM": (2, positions, 99),
    }
    assert logits.shape == expected[auto_name]


def test_each_head_reads_its_main_input_by_the_name_pipelines_and_trainer_pass():
    assert build(CustomTransformerModel, "llama").main_input_name == "input_ids"
    assert build(CustomTransformerModel, "vit").main_input_name == "pixel_values"
    assert build(CustomTransformerModel, "vit").input_modalities == "image"
    assert build(CustomTransformerForImageClassification, "vit").main_input_name == "pixel_values"
    assert build(CustomTransformerForCausalLM, "llama").main_input_name == "input_ids"


@pytest.mark.parametrize("preset", [*ENCODER_PRESETS, *DECODER_PRESETS])
def test_padding_does_not_change_the_outputs_of_real_tokens(preset):
    model = build(CustomTransformerModel, preset)
    input_ids, attention_mask = make_inputs(left_padding=preset in DECODER_PRESETS)
    padded = model(input_ids, attention_mask=attention_mask).last_hidden_state[0, attention_mask[0].bool()]
    real = input_ids[0, attention_mask[0].bool()][None]
    if preset in DECODER_PRESETS:  # positions of left-padded rows start at the first real token
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        padded = model(input_ids, attention_mask=attention_mask, position_ids=position_ids).last_hidden_state
        padded = padded[0, attention_mask[0].bool()]
    alone = model(real).last_hidden_state[0]
    assert_close(padded, alone, atol=1e-5, rtol=1e-5)


def test_decoders_are_causal_and_encoders_are_bidirectional():
    input_ids, _ = make_inputs()
    changed = input_ids.clone()
    changed[:, -1] = (changed[:, -1] + 1) % 99
    for preset, sees_the_future in (("llama", False), ("bert", True)):
        model = build(CustomTransformerModel, preset)
        before = model(input_ids).last_hidden_state[:, 0]
        after = model(changed).last_hidden_state[:, 0]
        assert (not torch.allclose(before, after)) is sees_the_future


def test_a_4d_attention_mask_is_accepted():
    model = build(CustomTransformerModel, "llama")
    input_ids, _ = make_inputs()
    causal = torch.full((7, 7), float("-inf")).triu(1)[None, None].expand(2, 1, 7, 7)
    assert_close(model(input_ids, attention_mask=causal).last_hidden_state, model(input_ids).last_hidden_state)


def test_causal_lm_refuses_a_bidirectional_config():
    with pytest.raises(ValueError, match="set is_decoder=True"):
        CustomTransformerForCausalLM(tiny_config("bert"))


# --- heads and losses --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model_class", "preset"),
    [(CustomTransformerForSequenceClassification, "bert"), (CustomTransformerForImageClassification, "vit")],
)
@pytest.mark.parametrize(
    ("problem_type", "num_labels", "labels"),
    [
        ("regression", 1, torch.tensor([0.5, -1.0])),
        ("single_label_classification", 3, torch.tensor([2, 0])),
        ("multi_label_classification", 3, torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])),
    ],
)
def test_classification_loss_follows_problem_type(model_class, preset, problem_type, num_labels, labels):
    model = build(model_class, preset, num_labels=num_labels, problem_type=problem_type)
    out = model(**inputs_for(preset), labels=labels)
    expected = {
        "regression": lambda: torch.nn.functional.mse_loss(out.logits.squeeze(-1), labels),
        "single_label_classification": lambda: torch.nn.functional.cross_entropy(out.logits, labels),
        "multi_label_classification": lambda: torch.nn.functional.binary_cross_entropy_with_logits(out.logits, labels),
    }[problem_type]()
    assert_close(out.loss, expected)


def test_last_token_pooling_reads_the_last_real_token_with_left_or_right_padding():
    model = build(CustomTransformerForSequenceClassification, "llama", num_labels=2)
    input_ids, attention_mask = make_inputs(left_padding=True)
    left = model(input_ids, attention_mask=attention_mask).logits[0]
    last_real = model.model(input_ids, attention_mask=attention_mask).last_hidden_state[0, -1]
    assert_close(left, model.score(last_real))
    input_ids, attention_mask = make_inputs(left_padding=False)
    right = model(input_ids, attention_mask=attention_mask).logits[0]
    last_real = model.model(input_ids, attention_mask=attention_mask).last_hidden_state[0, 4]
    assert_close(right, model.score(last_real))


def test_causal_lm_loss_divides_by_num_items_in_batch_when_given():
    model = build(CustomTransformerForCausalLM, "llama")
    input_ids, _ = make_inputs()
    mean_loss = model(input_ids, labels=input_ids).loss
    summed = model(input_ids, labels=input_ids, num_items_in_batch=torch.tensor(1)).loss
    assert_close(summed / (2 * 6), mean_loss)


def test_heads_with_a_per_batch_mean_loss_opt_out_of_trainer_loss_rescaling():
    # Trainer multiplies the loss by the world size for models that accept loss kwargs (DDP doubling otherwise).
    assert CustomTransformerForSequenceClassification.accepts_loss_kwargs is False
    assert CustomTransformerForQuestionAnswering.accepts_loss_kwargs is False


def test_question_answering_loss_is_the_mean_of_start_and_end_cross_entropy():
    model = build(CustomTransformerForQuestionAnswering, "bert")
    input_ids, attention_mask = make_inputs()
    start, end = torch.tensor([1, 2]), torch.tensor([3, 4])
    out = model(input_ids, attention_mask=attention_mask, start_positions=start, end_positions=end)
    ce = torch.nn.functional.cross_entropy
    assert_close(out.loss, (ce(out.start_logits, start) + ce(out.end_logits, end)) / 2)


# --- saving, loading, Auto classes -------------------------------------------------------------------------------


@pytest.mark.parametrize(("preset", "auto_name"), HEAD_CASES)
def test_every_head_round_trips_through_save_and_auto_from_pretrained(tmp_path, preset, auto_name):
    model = build(heads_for(preset)[auto_name], preset, num_labels=3)
    model.save_pretrained(tmp_path)
    reloaded = getattr(transformers, auto_name).from_pretrained(tmp_path).eval()
    assert type(reloaded) is type(model)
    assert_close(outputs_of(reloaded, **inputs_for(preset)), outputs_of(model, **inputs_for(preset)))


TEXT_HEADS = {"AutoModelForSequenceClassification", "AutoModelForTokenClassification", "AutoModelForQuestionAnswering"}


@pytest.mark.parametrize(
    ("preset", "saved", "expected"),
    [
        ("llama", CustomTransformerForSequenceClassification, {"AutoModel", "AutoModelForCausalLM", *TEXT_HEADS}),
        ("bert", CustomTransformerForSequenceClassification, {"AutoModel", "AutoModelForMaskedLM", *TEXT_HEADS}),
        ("vit", CustomTransformerModel, {"AutoModel", "AutoModelForImageClassification"}),
    ],
)
def test_auto_map_names_every_applicable_head_whichever_head_is_saved(tmp_path, preset, saved, expected):
    build(saved, preset).save_pretrained(tmp_path)
    config = AutoModel.from_pretrained(tmp_path).config
    assert set(config.auto_map) == {"AutoConfig", *expected}
    assert config.auto_map["AutoConfig"] == "configuration_custom_transformer.CustomTransformerConfig"
    assert {p.name for p in tmp_path.glob("*.py")} == {
        "checkpoint_io.py",
        "configuration_custom_transformer.py",
        "modeling_custom_transformer.py",
        "pipeline_custom_transformer.py",
        "transformers_compat.py",
    }
    assert set(code_files()) == {p.name for p in tmp_path.glob("*.py")}  # what refresh and the other tests read


def test_a_checkpoint_saved_from_one_head_loads_the_shared_backbone_into_another(tmp_path):
    lm = build(CustomTransformerForCausalLM, "llama")
    lm.save_pretrained(tmp_path)
    classifier = AutoModelForSequenceClassification.from_pretrained(tmp_path, num_labels=2)
    assert_close(classifier.model.embed_tokens.weight, lm.model.embed_tokens.weight)
    assert_close(classifier.model.layers[1].mlp.down_proj.weight, lm.model.layers[1].mlp.down_proj.weight)


@pytest.mark.parametrize("preset", ["vaswani", "llama"])
def test_computed_buffers_are_rebuilt_after_a_meta_device_load(tmp_path, preset):
    model = build(CustomTransformerModel, preset, is_encoder_decoder=False)  # vaswani: the paper's encoder alone
    model.save_pretrained(tmp_path)
    reloaded = CustomTransformerModel.from_pretrained(tmp_path)
    if preset == "vaswani":
        assert_close(reloaded.embed_positions.table, sinusoidal_table(64, 32))
    else:
        assert_close(reloaded.rotary_emb.inv_freq, 1.0 / 10000 ** (torch.arange(0, 8, 2).float() / 8))
    input_ids, _ = make_inputs()
    assert_close(reloaded(input_ids).last_hidden_state, model(input_ids).last_hidden_state)


@pytest.mark.parametrize("dtype_kwarg", ["dtype", "torch_dtype"])
def test_from_pretrained_loads_in_the_requested_dtype(tmp_path, dtype_kwarg):
    build(CustomTransformerForCausalLM, "llama").save_pretrained(tmp_path)
    model = AutoModelForCausalLM.from_pretrained(tmp_path, **{dtype_kwarg: torch.bfloat16})
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert model(make_inputs()[0]).logits.dtype == torch.bfloat16


# --- tying, resizing, gradient checkpointing ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model_class", "preset", "output"),
    [(CustomTransformerForCausalLM, "gpt2", "lm_head"), (CustomTransformerForMaskedLM, "bert", "lm_head.decoder")],
)
def test_lm_heads_are_tied_to_the_input_embeddings_and_stay_tied_after_resizing(model_class, preset, output):
    model = build(model_class, preset)
    assert model.get_output_embeddings().weight is model.model.embed_tokens.weight
    model.resize_token_embeddings(120)
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    assert model.get_output_embeddings().weight.shape == (120, 32) and model.config.vocab_size == 120
    assert model(torch.tensor([[110, 3, 4]])).logits.shape == (1, 3, 120)


def test_untied_presets_keep_a_separate_lm_head(tmp_path):
    model = build(CustomTransformerForCausalLM, "llama")
    assert model.lm_head.weight is not model.model.embed_tokens.weight
    model.save_pretrained(tmp_path)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert_close(reloaded.lm_head.weight, model.lm_head.weight)


@pytest.mark.parametrize("preset", ["llama", "bert"])
def test_gradient_checkpointing_gives_the_same_loss_and_gradients(preset):
    model_class = CustomTransformerForCausalLM if preset == "llama" else CustomTransformerForMaskedLM
    input_ids, _ = make_inputs()

    def loss_and_grads(checkpointing: bool):
        model = build(model_class, preset).train()
        if checkpointing:
            model.activation_checkpointing_enable()
        loss = model(input_ids, labels=input_ids).loss
        loss.backward()
        return loss, {n: p.grad for n, p in model.named_parameters() if p.grad is not None}

    loss, grads = loss_and_grads(False)
    loss_ckpt, grads_ckpt = loss_and_grads(True)
    assert_close(loss_ckpt, loss)
    assert grads.keys() == grads_ckpt.keys() and len(grads) > 10
    for name in grads:
        assert_close(grads_ckpt[name], grads[name], msg=name)


# --- generation --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("preset", DECODER_PRESETS)
def test_greedy_generation_is_the_same_with_and_without_the_kv_cache(preset):
    model = build(CustomTransformerForCausalLM, preset)
    input_ids, attention_mask = make_inputs(left_padding=True)
    kwargs = {"attention_mask": attention_mask, "max_new_tokens": 8, "do_sample": False, "pad_token_id": 0}
    cached = model.generate(input_ids, use_cache=True, **kwargs)
    uncached = model.generate(input_ids, use_cache=False, **kwargs)
    static = model.generate(input_ids, cache_implementation="static", **kwargs)
    assert cached.shape == (2, 15)
    assert torch.equal(cached, uncached)
    assert torch.equal(cached, static)


def test_each_head_declares_the_stacks_and_inputs_it_fits_and_the_auto_class_that_loads_it():
    fits = {head.__name__: (head.auto_class, head.stacks, head.input_kinds) for head in HEADS}
    assert {name: auto_class for name, (auto_class, _, _) in fits.items()} == {
        "CustomTransformerModel": "AutoModel",
        "CustomTransformerForCausalLM": "AutoModelForCausalLM",
        "CustomTransformerForMaskedLM": "AutoModelForMaskedLM",
        "CustomTransformerForSequenceClassification": "AutoModelForSequenceClassification",
        "CustomTransformerForTokenClassification": "AutoModelForTokenClassification",
        "CustomTransformerForQuestionAnswering": "AutoModelForQuestionAnswering",
        "CustomTransformerForImageClassification": "AutoModelForImageClassification",
        "CustomTransformerSeq2SeqModel": "AutoModel",
        "CustomTransformerForConditionalGeneration": "AutoModelForSeq2SeqLM",
    }
    assert {name: fit[1:] for name, fit in fits.items()} == {
        "CustomTransformerModel": (("encoder", "decoder"), ("tokens", "patches")),
        "CustomTransformerForCausalLM": (("decoder",), ("tokens",)),
        "CustomTransformerForMaskedLM": (("encoder",), ("tokens",)),
        "CustomTransformerForSequenceClassification": (("encoder", "decoder"), ("tokens",)),
        "CustomTransformerForTokenClassification": (("encoder", "decoder"), ("tokens",)),
        "CustomTransformerForQuestionAnswering": (("encoder", "decoder"), ("tokens",)),
        "CustomTransformerForImageClassification": (("encoder",), ("patches",)),
        "CustomTransformerSeq2SeqModel": (("encoder-decoder",), ("tokens",)),
        "CustomTransformerForConditionalGeneration": (("encoder-decoder",), ("tokens",)),
    }


def test_only_the_causal_lm_and_the_encoder_decoder_can_generate():
    assert [head.auto_class for head in HEADS if head.can_generate()] == [
        "AutoModelForCausalLM",
        "AutoModelForSeq2SeqLM",
    ]


def test_with_the_package_installed_each_auto_class_builds_the_head_that_fits_the_config():
    for preset in ("llama", "vaswani"):
        config = tiny_config(preset)
        for auto_name, head in heads_for(preset).items():
            assert type(getattr(transformers, auto_name).from_config(config)) is head


def test_the_gpt2_preset_starts_from_gpt2s_scaled_residual_initialisation():
    """Output projections at std / sqrt(2 * layers), the rest at std, as `GPT2LMHeadModel` initialises them."""
    from transformers import GPT2Config, GPT2LMHeadModel

    sizes = {"hidden_size": 256, "num_hidden_layers": 8, "num_attention_heads": 4, "intermediate_size": 1024}
    torch.manual_seed(0)
    ours = CustomTransformerForCausalLM(tiny_config("gpt2", **sizes)).model.layers
    torch.manual_seed(0)
    reference = GPT2LMHeadModel(GPT2Config(n_embd=256, n_layer=8, n_head=4, n_inner=1024, vocab_size=99)).transformer.h

    def std(modules) -> float:
        return torch.cat([m.weight.flatten() for m in modules]).std().item()

    scaled = 0.02 / (2 * 8) ** 0.5
    for ours_modules, reference_modules, expected in [
        ([layer.self_attn.o_proj for layer in ours], [layer.attn.c_proj for layer in reference], scaled),
        ([layer.mlp.down_proj for layer in ours], [layer.mlp.c_proj for layer in reference], scaled),
        ([layer.mlp.up_proj for layer in ours], [layer.mlp.c_fc for layer in reference], 0.02),
    ]:
        assert std(ours_modules) == pytest.approx(expected, rel=0.02)
        assert std(ours_modules) == pytest.approx(std(reference_modules), rel=0.02)
    unscaled = CustomTransformerForCausalLM(tiny_config("llama", **sizes)).model.layers
    assert std([layer.self_attn.o_proj for layer in unscaled]) == pytest.approx(0.02, rel=0.02)
