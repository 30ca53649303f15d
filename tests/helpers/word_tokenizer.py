"""A whitespace word-level tokenizer over a tiny vocabulary, for checkpoints that pipelines and generate can use."""

from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

WORDS = ["<pad>", "<s>", "</s>", "<mask>", "<unk>"] + "the cat sat on a mat dog ran far away big small".split()
# A chat template in the vocabulary's own words: each message's text, then "the" to start the reply.
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['content'] }} {% endfor %}{% if add_generation_prompt %}the{% endif %}"
)


def word_tokenizer() -> PreTrainedTokenizerFast:
    """The tokenizer, with special ids matching the tiny configs (pad 0, bos 1, eos 2) and a chat template."""
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        mask_token="<mask>",
        unk_token="<unk>",
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def save_with_tokenizer(model, folder) -> str:
    model.save_pretrained(folder)
    word_tokenizer().save_pretrained(folder)
    return str(folder)
