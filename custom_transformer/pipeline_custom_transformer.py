"""Translation, summarisation and text-to-text pipelines for the encoder-decoder, shipped inside its checkpoints.

transformers 5 removed the `translation`, `summarization` and `text2text-generation` pipelines, but `pipeline()`
still builds the pipeline a checkpoint names in `config.custom_pipelines` (with `trust_remote_code=True`) before it
looks a task up. So an encoder-decoder checkpoint carries this file, and

    pipeline("translation", model="./ckpt", trust_remote_code=True)("Der Hund bellt.")

works where this package is not installed. Each task answers under the key its transformers 4 pipeline used.
"""

from transformers import Pipeline

# task -> the key each answer is returned under (transformers 4's TranslationPipeline, SummarizationPipeline, ...)
TEXT_TO_TEXT_TASKS = {
    "translation": "translation_text",
    "summarization": "summary_text",
    "text2text-generation": "generated_text",
}


def custom_pipelines(module: str) -> dict[str, dict]:
    """The `config.custom_pipelines` entry that points every text-to-text task at `Seq2SeqGenerationPipeline`."""
    entry = {"impl": f"{module}.Seq2SeqGenerationPipeline", "pt": ["AutoModelForSeq2SeqLM"], "tf": [], "type": "text"}
    return {task: dict(entry) for task in TEXT_TO_TEXT_TASKS}


class Seq2SeqGenerationPipeline(Pipeline):
    """Tokenize each text, `generate` its output with the checkpoint's generation config (plus any `generate`
    keyword given to the call), and decode it without special tokens."""

    _load_tokenizer = True
    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = False

    def _sanitize_parameters(self, truncation=None, **generate_kwargs):
        preprocess = {} if truncation is None else {"truncation": truncation}
        return preprocess, generate_kwargs, {}

    def preprocess(self, text: str, truncation: bool = True):
        if not isinstance(text, str):
            raise ValueError(
                f"The {self.task} pipeline reads text (a str or a list of them), not {type(text).__name__}."
            )
        return self.tokenizer(text, return_tensors="pt", truncation=truncation)

    def _forward(self, model_inputs, **generate_kwargs):
        return {"output_ids": self.model.generate(**model_inputs, **generate_kwargs)}

    def postprocess(self, model_outputs) -> list[dict[str, str]]:
        key = TEXT_TO_TEXT_TASKS.get(self.task, "generated_text")
        texts = self.tokenizer.batch_decode(model_outputs["output_ids"], skip_special_tokens=True)
        return [{key: text} for text in texts]
