"""The task registry (training/tasks.py): every row names things that exist, so adding a task is one row."""

import transformers

from custom_transformer.modeling_custom_transformer import AUTO_CLASSES
from training import finetune
from training.tasks import FINE_TUNING_TASKS, TASKS


def test_each_task_is_keyed_by_its_pipeline_tag_and_names_a_registered_head_and_a_collator():
    for tag, task in TASKS.items():
        assert task.pipeline_tag == tag
        assert tag in transformers.pipelines.SUPPORTED_TASKS
        assert AUTO_CLASSES[task.auto_class].__name__.endswith(task.head_suffix)
        assert hasattr(transformers, task.collator)
        assert task.auto_model() is getattr(transformers, task.auto_class)


def test_fine_tuning_tasks_name_their_label_columns_and_a_preprocessing_function():
    assert list(FINE_TUNING_TASKS) == ["text-classification", "token-classification"]
    for task in FINE_TUNING_TASKS.values():
        assert task.labels in ("sequence", "token") and len(task.columns) == 2
        assert task.tokenize() is getattr(finetune, task.tokenizer_function)
