"""Tokenizer training, pre-training, fine-tuning and evaluation scripts for custom_transformer (see README.md).

Run them as modules: `python -m training.demo`, `python -m training.pretrain --help`, ...
"""
