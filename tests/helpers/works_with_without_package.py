"""Run in a fresh interpreter: every "works with" row that loads a checkpoint, where `custom_transformer` cannot be imported.

Usage: python works_with_without_package.py CASES.json RESULT.json

CASES.json (written by tests/test_works_with.py) names the checkpoint folders, the inputs, and a scratch folder.
Every model here comes from a folder's own code (`trust_remote_code=True`); RESULT.json gets, per row, the numbers
the test compares with the model run in the test's own process (or the row's error, as text: the run goes on).
"""

import contextlib
import io
import json
import runpy
import sys
import threading
import time
import traceback
from pathlib import Path

import torch
import transformers

# Before any checkpoint loads: `import custom_transformer` fails from here on (the project's one blocker).
runpy.run_path(str(Path(__file__).resolve().parents[2] / "training" / "without_package.py"))

from transformers import (  # noqa: E402
    AutoImageProcessor,
    AutoModelForCausalLM,
    AutoModelForImageClassification,
    AutoTokenizer,
    pipeline,
)


def load(folder: str, **kwargs):
    return AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True, **kwargs).eval()


def logits_of(model, batch: dict) -> list:
    with torch.no_grad():
        return model(**batch, use_cache=False).logits.float().tolist()


def pipelines(cases: dict, batch: dict) -> dict:
    """Every pipeline a checkpoint of ours serves: the task's head comes from the folder's own code."""
    chat = pipeline("text-generation", model=cases["causal"], trust_remote_code=True)
    greedy = {"max_new_tokens": cases["max_new_tokens"], "do_sample": False}
    features = pipeline("feature-extraction", model=cases["causal"], trust_remote_code=True)
    zero_shot = pipeline("zero-shot-classification", model=cases["classifier"], trust_remote_code=True)
    scored = zero_shot(cases["premise"], candidate_labels=cases["candidate_labels"], **cases["zero_shot_options"])
    fill_mask = pipeline("fill-mask", model=cases["masked"], trust_remote_code=True)
    classify = pipeline("text-classification", model=cases["classifier"], trust_remote_code=True)
    tagger = pipeline("token-classification", model=cases["tagger"], trust_remote_code=True)
    translate = pipeline("translation", model=cases["translator"], trust_remote_code=True)
    summarize = pipeline("summarization", model=cases["translator"], trust_remote_code=True)
    text_to_text = pipeline("text2text-generation", model=cases["translator"], trust_remote_code=True)
    return {
        "chat": chat(cases["chat"], **greedy)[0]["generated_text"],
        "chat_model_module": type(chat.model).__module__,
        "text_tokens": chat(cases["sentence"], return_tensors=True, **greedy)[0]["generated_token_ids"],
        "features": features(cases["sentence"]),
        "features_model_class": type(features.model).__name__,
        "zero_shot": dict(zip(scored["labels"], scored["scores"])),
        "zero_shot_model_class": type(zero_shot.model).__name__,
        # Scores as floats: some pipelines give numpy's.
        "fill_mask": [(guess["token_str"], float(guess["score"])) for guess in fill_mask(cases["masked_sentence"])],
        "text_classification": [
            {"label": label["label"], "score": float(label["score"])}
            for label in classify(cases["sentence"], top_k=None)
        ],
        "token_classification": [
            (tag["word"], tag["entity"], float(tag["score"])) for tag in tagger(cases["sentence"])
        ],
        "translation": translate(cases["sentence"], **greedy)[0]["translation_text"],
        "translation_pipeline_class": type(translate).__name__,
        "summarization": summarize(cases["sentence"], **greedy),
        "text2text_generation": text_to_text(cases["sentence"], **greedy),
    }


def peft_lora(cases: dict, batch: dict) -> dict:
    """Each LoRA's merged model as a plain checkpoint, and its adapter on the remote-code base."""
    import peft

    runs = {}
    for name, folders in cases["lora"].items():
        adapted = peft.PeftModel.from_pretrained(load(cases["causal"]), folders["adapter"]).eval()
        runs[name] = {"merged": logits_of(load(folders["merged"]), batch), "adapter_on_base": logits_of(adapted, batch)}
    return runs


class LogitsOnly(torch.nn.Module):
    """What an exported graph computes: ids and mask in, logits out (no cache)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits


def onnx_export(cases: dict, batch: dict) -> dict:
    """`torch.onnx.export(dynamo=True)` with dynamic batch and sequence, run in onnxruntime at two shapes."""
    import onnxruntime

    path = Path(cases["scratch"]) / "onnx" / "model.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    dims = {0: torch.export.Dim("batch"), 1: torch.export.Dim("sequence")}
    started = time.perf_counter()
    torch.onnx.export(
        LogitsOnly(load(cases["causal"])),
        (batch["input_ids"], batch["attention_mask"]),
        str(path),
        dynamo=True,
        input_names=["input_ids", "attention_mask"],
        output_names=["logits"],
        dynamic_shapes={"input_ids": dims, "attention_mask": dims},
    )
    export_s = time.perf_counter() - started
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    runs = {}
    for name in ("batch", "other_shape"):
        feed = {key: torch.tensor(value).numpy() for key, value in cases[name].items()}
        runs[name] = session.run(["logits"], feed)[0].tolist()
    return {**runs, "export_s": export_s}


def torchao_int8(cases: dict, batch: dict) -> dict:
    """Int8 weight-only through `quantization_config`, saved and loaded again."""
    from torchao.quantization import Int8WeightOnlyConfig
    from transformers import TorchAoConfig

    quantized = load(cases["causal"], quantization_config=TorchAoConfig(Int8WeightOnlyConfig()))
    folder = Path(cases["scratch"]) / "int8"
    quantized.save_pretrained(folder)
    reloaded = load(str(folder))
    return {
        "quantized": logits_of(quantized, batch),
        "reloaded": logits_of(reloaded, batch),
        "weight_type": type(quantized.model.layers[0].self_attn.q_proj.weight).__name__,
        "reloaded_weight_type": type(reloaded.model.layers[0].self_attn.q_proj.weight).__name__,
        "saved_files": sorted(path.name for path in folder.iterdir()),
    }


def disk_offload(cases: dict, batch: dict) -> dict:
    """`device_map="auto"` with too little memory for the model: the later layers wait on disk."""
    folder = Path(cases["scratch"]) / "offload"
    model = load(cases["causal"], device_map="auto", max_memory={"cpu": cases["cpu_budget"]}, offload_folder=folder)
    return {
        "device_map": {name: str(device) for name, device in model.hf_device_map.items()},
        "logits": logits_of(model, batch),
    }


def bfloat16(cases: dict, batch: dict) -> dict:
    """`dtype=torch.bfloat16` on load, a forward pass and greedy generation in bf16."""
    model = load(cases["causal"], dtype=torch.bfloat16)
    prompt = {key: torch.tensor(value) for key, value in cases["prompt"].items()}
    new_tokens = cases["max_new_tokens"]
    with torch.no_grad():
        generated = model.generate(**prompt, do_sample=False, max_new_tokens=new_tokens, min_new_tokens=new_tokens)
    return {
        "dtypes": sorted({str(parameter.dtype) for parameter in model.parameters()}),
        "logits": logits_of(model, batch),
        "generated": generated[:, prompt["input_ids"].shape[1] :].tolist(),
    }


def sharded_resave(cases: dict, batch: dict) -> dict:
    """A loaded checkpoint saved again in small shards, then loaded from them."""
    folder = Path(cases["scratch"]) / "sharded"
    load(cases["causal"]).save_pretrained(folder, max_shard_size=cases["max_shard_size"])
    return {
        "shards": len(list(folder.glob("model-*-of-*.safetensors"))),
        "has_index": (folder / "model.safetensors.index.json").is_file(),
        "logits": logits_of(load(str(folder)), batch),
    }


def attention_switch(cases: dict, batch: dict) -> dict:
    """`set_attn_implementation` on remote code: the config must really change, each time."""
    model = load(cases["causal"])
    seen = {"loaded": (model.config._attn_implementation, logits_of(model, batch))}
    for backend in ("eager", "sdpa"):
        model.set_attn_implementation(backend)
        seen[backend] = (model.config._attn_implementation, logits_of(model, batch))
    return {step: {"config": config, "logits": logits} for step, (config, logits) in seen.items()}


def generation_strategies(cases: dict, batch: dict) -> dict:
    """Beam search, prompt lookup, assisted generation and both streamers on a remote-code model."""
    model = load(cases["causal"])
    tokenizer = AutoTokenizer.from_pretrained(cases["causal"], trust_remote_code=True)
    new_tokens = cases["max_new_tokens"]
    prompt = {key: torch.tensor(value) for key, value in cases["prompt"].items()}
    single = {key: torch.tensor(value) for key, value in cases["single_prompt"].items()}
    fixed_length = {"do_sample": False, "max_new_tokens": new_tokens, "min_new_tokens": new_tokens}
    # One prompt, stopping at eos as a chat would: 5.0 refuses `min_new_tokens` with an assistant model.
    greedy = {"do_sample": False, "max_new_tokens": new_tokens}

    def new(output, inputs) -> list:
        return output[:, inputs["input_ids"].shape[1] :].tolist()

    with torch.no_grad():
        result = {
            "beam_search": new(model.generate(**prompt, num_beams=3, **fixed_length), prompt),
            "greedy": new(model.generate(**single, **greedy), single),
            "prompt_lookup": new(model.generate(**single, prompt_lookup_num_tokens=3, **greedy), single),
            "assisted": new(model.generate(**single, assistant_model=load(cases["draft"]), **greedy), single),
        }
        iterator = transformers.TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
        worker = threading.Thread(target=model.generate, kwargs={**single, **greedy, "streamer": iterator})
        worker.start()
        result["iterator_streamer"] = list(iterator)
        worker.join()
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            streamer = transformers.TextStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
            model.generate(**single, **greedy, streamer=streamer)
        result["text_streamer"] = printed.getvalue()
    return result


def compiled_decode(cases: dict, batch: dict) -> dict:
    """A static-cache decode step traced whole by dynamo (`fullgraph=True`), as generate's compiled path needs, and
    exported by `torch.export` (strict), the ExecuTorch route. Backend "eager": dynamo alone finds the graph breaks,
    without minutes of inductor."""
    from static_cache_step import StaticCacheDecodeStep
    from transformers import StaticCache

    model = load(cases["causal"])
    ids = torch.tensor(cases["single_prompt"]["input_ids"])

    def prefilled() -> StaticCache:
        cache = StaticCache(config=model.config, max_cache_len=ids.shape[1])
        model(ids[:, :-1], past_key_values=cache, use_cache=True)
        return cache

    with torch.no_grad():
        cache = prefilled()
        torch._dynamo.reset()
        step = torch.compile(
            lambda token: model(token, past_key_values=cache, use_cache=True).logits, fullgraph=True, backend="eager"
        )
        compiled = step(ids[:, -1:]).tolist()
        exported = torch.export.export(StaticCacheDecodeStep(model, prefilled()), (ids[:, -1:],), strict=True)
        return {
            "compiled": compiled,
            "exported": exported.module()(ids[:, -1:]).tolist(),
            "eager": model(ids, use_cache=False).logits[:, -1:].tolist(),
        }


def serving_backends(cases: dict, batch: dict) -> dict:
    """vLLM and SGLang run a remote-code model through its transformers class when it says it can."""
    return {"is_backend_compatible": load(cases["causal"]).is_backend_compatible()}


def continuous_batching(cases: dict, batch: dict) -> dict:
    """`generate_batch`: requests of different lengths scheduled together through a paged cache, on the checkpoint
    and on its in-library Llama twin (5.0 sizes the paged cache from the device's total memory, which it reports
    as None on CPU: no model gets an answer there)."""
    from transformers import GenerationConfig, LlamaForCausalLM
    from transformers.generation.continuous_batching import requests

    config = GenerationConfig(max_new_tokens=cases["max_new_tokens"], do_sample=False, eos_token_id=-1, pad_token_id=0)
    # A small paged cache (else it is sized from free RAM and takes 18 s to clear): set in ContinuousBatchingConfig
    # where generate_batch takes one, else read off the generation config (5.0).
    if hasattr(transformers, "ContinuousBatchingConfig"):
        sizes = {"continuous_batching_config": transformers.ContinuousBatchingConfig(**cases["paged_cache"])}
    else:
        sizes = {}
        for name, value in cases["paged_cache"].items():
            setattr(config, name, value)
    generated = {}
    for name, model in [("model", load(cases["causal"])), ("llama", LlamaForCausalLM.from_pretrained(cases["llama"]))]:
        with torch.no_grad():
            done = model.eval().generate_batch(cases["requests"], generation_config=config, progress_bar=False, **sizes)
        generated[name] = [done[request].generated_tokens for request in sorted(done)]
    _, total_memory, _, _ = requests.get_device_and_memory_breakdown()
    return {**generated, "cpu_total_memory_seen": total_memory}


# --- images: the image classifier checkpoint, with transformers' own image processor -------------------------------


def pictures(cases: dict) -> list:
    """The test's images (uint8 height x width x RGB lists) as PIL images, as a user passes them."""
    import numpy as np
    from PIL import Image

    return [Image.fromarray(np.array(image, dtype=np.uint8)) for image in cases["images"]]


def load_image_classifier(folder: str, **kwargs):
    return AutoModelForImageClassification.from_pretrained(folder, trust_remote_code=True, **kwargs).eval()


def image_logits(model, pixel_values: torch.Tensor) -> list:
    with torch.no_grad():
        return model(pixel_values=pixel_values.to(model.dtype)).logits.float().tolist()


def image_pixels(cases: dict) -> torch.Tensor:
    """The pictures through the PIL image processor by its class: transformers 5.4 - 5.17 gate `AutoImageProcessor`
    itself behind torchvision, and the rows other than the pipelines' are about the model, not the processor."""
    processor_class = getattr(transformers, "ViTImageProcessorPil", None) or transformers.ViTImageProcessor
    return processor_class.from_pretrained(cases["image_classifier"])(pictures(cases), return_tensors="pt")[
        "pixel_values"
    ]


def image_pipelines(cases: dict, batch: dict) -> dict:
    """`image-classification` and `image-feature-extraction` with the processor the folder names (no remote code)."""
    folder = cases["image_classifier"]
    processor = AutoImageProcessor.from_pretrained(folder)
    classify = pipeline("image-classification", model=folder, trust_remote_code=True)
    features = pipeline("image-feature-extraction", model=folder, trust_remote_code=True)
    answers = classify(pictures(cases), top_k=3)
    return {
        "processor_class": type(processor).__name__,
        "pixel_values": image_pixels(cases).tolist(),
        "classification": [[(answer["label"], float(answer["score"])) for answer in image] for image in answers],
        "classifier_module": type(classify.model).__module__,
        "features": features(pictures(cases)[0]),
        "features_model_class": type(features.model).__name__,
    }


def image_peft(cases: dict, batch: dict) -> dict:
    """The image LoRA adapter (attention projections, the classifier fully trained) on the remote-code base."""
    import peft

    adapted = peft.PeftModel.from_pretrained(load_image_classifier(cases["image_classifier"]), cases["image_lora"])
    return {"logits": image_logits(adapted.eval(), image_pixels(cases))}


def image_bfloat16(cases: dict, batch: dict) -> dict:
    model = load_image_classifier(cases["image_classifier"], dtype=torch.bfloat16)
    return {
        "dtypes": sorted({str(parameter.dtype) for parameter in model.parameters()}),
        "logits": image_logits(model, image_pixels(cases)),
    }


def image_int8(cases: dict, batch: dict) -> dict:
    from torchao.quantization import Int8WeightOnlyConfig
    from transformers import TorchAoConfig

    config = TorchAoConfig(Int8WeightOnlyConfig())
    quantized = load_image_classifier(cases["image_classifier"], quantization_config=config)
    folder = Path(cases["scratch"]) / "image-int8"
    quantized.save_pretrained(folder)
    return {
        "quantized": image_logits(quantized, image_pixels(cases)),
        "reloaded": image_logits(load_image_classifier(str(folder)), image_pixels(cases)),
        "weight_type": type(quantized.model.layers[0].self_attn.q_proj.weight).__name__,
    }


class ImageLogitsOnly(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, pixel_values):
        return self.model(pixel_values=pixel_values).logits


def image_onnx(cases: dict, batch: dict) -> dict:
    """`torch.onnx.export(dynamo=True)` with a dynamic batch, run in onnxruntime on one image and on all."""
    import onnxruntime

    pixels = image_pixels(cases)
    path = Path(cases["scratch"]) / "image-onnx" / "model.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        ImageLogitsOnly(load_image_classifier(cases["image_classifier"])),
        (pixels,),
        str(path),
        dynamo=True,
        input_names=["pixel_values"],
        output_names=["logits"],
        dynamic_shapes={"pixel_values": {0: torch.export.Dim("batch")}},
    )
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return {
        "all": session.run(["logits"], {"pixel_values": pixels.numpy()})[0].tolist(),
        "first": session.run(["logits"], {"pixel_values": pixels[:1].numpy()})[0].tolist(),
    }


def image_compile(cases: dict, batch: dict) -> dict:
    """The forward traced whole by dynamo (`fullgraph=True`; backend "eager": dynamo alone finds graph breaks)."""
    model = load_image_classifier(cases["image_classifier"])
    torch._dynamo.reset()
    compiled = torch.compile(lambda pixels: model(pixel_values=pixels).logits, fullgraph=True, backend="eager")
    with torch.no_grad():
        return {"compiled": compiled(image_pixels(cases)).tolist()}


ROWS = {
    "pipelines": pipelines,
    "peft": peft_lora,
    "onnx": onnx_export,
    "torchao": torchao_int8,
    "disk_offload": disk_offload,
    "bfloat16": bfloat16,
    "sharded_resave": sharded_resave,
    "attn_implementation": attention_switch,
    "generation": generation_strategies,
    "compiled_decode": compiled_decode,
    "serving_backends": serving_backends,
    "continuous_batching": continuous_batching,
    "image_pipelines": image_pipelines,
    "image_peft": image_peft,
    "image_bfloat16": image_bfloat16,
    "image_int8": image_int8,
    "image_onnx": image_onnx,
    "image_compile": image_compile,
}


def main(cases_path: str, result_path: str):
    cases = json.loads(Path(cases_path).read_text())
    batch = {key: torch.tensor(value) for key, value in cases["batch"].items()}
    try:
        import custom_transformer  # noqa: F401

        blocked = False
    except ImportError:
        blocked = True
    from transformers.distributed import DistributedConfig

    result = {
        "transformers_version": transformers.__version__,
        "package_blocked": blocked,
        "loaded_module": type(load(cases["causal"])).__module__,
        "logits": logits_of(load(cases["causal"]), batch),
        # The tensor-parallel row (tests/helpers/tensor_parallel_without_package.py) needs this field.
        "distributed_config_has_tp_plan": "tp_plan" in getattr(DistributedConfig, "__dataclass_fields__", {}),
        "rows": {},
        "seconds": {},
    }
    for name, row in ROWS.items():
        started = time.perf_counter()
        try:
            result["rows"][name] = row(cases, batch)
        except Exception as error:  # recorded for the test, which shows it
            result["rows"][name] = {"error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()}
        result["seconds"][name] = round(time.perf_counter() - started, 2)
    Path(result_path).write_text(json.dumps(result))


if __name__ == "__main__":
    main(*sys.argv[1:3])
