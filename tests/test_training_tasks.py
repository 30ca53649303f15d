"""The task registry (training/tasks/): every row names things that exist, and its code module has what the script
calls, so adding a task is a row and its module."""

import transformers

from custom_transformer.modeling_custom_transformer import HEADS
from training import finetune
from training.tasks import FINE_TUNING_TASKS, TASKS

# What training.finetune calls on a fine-tuning task's code module.
TASK_CODE = ("read_labels", "stratify_column", "INCLUDE_FOR_METRICS", "compute_metrics", "logits_to_predictions")


def test_each_task_is_keyed_by_its_pipeline_tag_and_names_a_registered_head_and_a_collator():
    for tag, task in TASKS.items():
        assert task.pipeline_tag == tag
        assert (tag in transformers.pipelines.SUPPORTED_TASKS) == task.has_pipeline
        assert any(head.__name__.endswith(task.head_suffix) for head in HEADS if head.auto_class == task.auto_class)
        assert hasattr(transformers, task.collator)
        assert task.auto_model() is getattr(transformers, task.auto_class)


def test_fine_tuning_tasks_name_their_columns_and_code_with_everything_the_script_calls():
    assert list(FINE_TUNING_TASKS) == [
        "text-classification",
        "token-classification",
        "question-answering",
        "image-classification",
        "translation",
    ]
    for task in FINE_TUNING_TASKS.values():
        assert len(task.columns) >= 2
        assert all(hasattr(finetune.DataArguments(), column.argument) for column in (*task.columns, *task.options))
        assert task.processor in finetune.PROCESSOR_LOADERS
        code = task.task_code()
        assert all(hasattr(code, name) for name in TASK_CODE), task.code
        assert task.preprocess() is getattr(code, task.preprocess_function)
        assert set(task.baselines) <= set(code.BASELINES)
