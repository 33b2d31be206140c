"""Pieces with no process around them: the launch command, rule rewards and judges, the
evaluation bookkeeping, KTO weights and the layer-wise optimiser."""

import sys

import pytest

from training import jobs as training_jobs
from training.evaluation import compare
from training.rewards import count_sentences, judge_pair, make_reward_function, parse_judge_rule
from training.trainer import _improvement


def test_one_gpu_or_none_runs_the_trainer_module_directly(monkeypatch):
    monkeypatch.setattr(training_jobs, "visible_gpus", lambda: 1)
    assert training_jobs.launch_command(7, 9) == [sys.executable, "-m", "training.run", "7", "--job", "9"]


def test_several_gpus_go_through_accelerate_launch(monkeypatch):
    monkeypatch.setattr(training_jobs, "visible_gpus", lambda: 4)
    command = training_jobs.launch_command(7, 9)
    assert command[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    assert command[command.index("--num_processes") + 1] == "4" and "--multi_gpu" in command
    assert command[-5:] == ["-m", "training.run", "7", "--job", "9"]


def test_sentence_rule():
    assert count_sentences("One. Two! Three? ") == 3
    assert count_sentences("No full stop at the end") == 1
    assert count_sentences("") == 0
    assert judge_pair("max_sentences:3", "Short. Answer.", "A. B. C. D. E. F.") == "first"
    assert judge_pair("max_sentences:3", "A. B. C. D.", "Fine.") == "second"
    assert judge_pair("max_sentences:3", "Fine.", "Also fine. Yes.") == "tie"
    assert judge_pair("max_words:3", "one two", "one two three four five six") == "first"
    with pytest.raises(ValueError, match="unknown rule"):
        parse_judge_rule("max_vibes")
    with pytest.raises(ValueError, match="needs a number"):
        parse_judge_rule("max_sentences:many")


def test_rule_reward_reads_plain_and_conversational_completions():
    reward = make_reward_function("max_sentences:3")
    scores = reward(["One. Two.", [{"role": "assistant", "content": "A. B. C. D. E. F."}], ""])
    assert scores == [1.0, 0.5, 0.0]


def test_win_rate_counts_a_win_only_when_both_orders_agree():
    prompts = ["p1", "p2", "p3", "p4"]
    base = ["A. B. C. D.", "Ok.", "A. B. C. D.", "Ok."]
    trained = ["Ok.", "A. B. C. D.", "A. B. C. D. E. F.", "Fine."]
    result = compare("max_sentences:3", prompts, base, trained)
    assert (result["wins"], result["losses"], result["ties"]) == (1, 2, 1)
    assert result["win_rate"] == pytest.approx((1 + 0.5) / 4)
    assert result["samples"][0]["outcome"] == "win"


def test_improvement_knows_which_way_is_better():
    out = _improvement({"loss": 2.0, "rewards/accuracies": 0.5, "entropy": 3.0},
                       {"loss": 1.5, "rewards/accuracies": 0.25, "entropy": 1.0})
    assert out["loss"]["better"] is True and out["rewards/accuracies"]["better"] is False
    assert "entropy" not in out


def test_padding_free_rows_are_truncated_as_trl_truncates_and_unlearnable_ones_dropped():
    from datasets import Dataset

    from training.trainer import truncate_prepared

    rows = Dataset.from_list([
        {"input_ids": [1, 2, 3, 4, 5, 6], "labels": [-100, -100, 3, 4, 5, 6]},
        {"input_ids": [7, 8], "labels": [-100, 8]},
        {"input_ids": [9, 10, 11, 12], "labels": [-100, -100, -100, -100 + 112]},  # label beyond the cut
    ])
    out = truncate_prepared(rows, 3)
    assert out["input_ids"] == [[1, 2, 3], [7, 8]] and out["labels"] == [[-100, -100, 3], [-100, 8]]


def test_the_run_summary_has_peak_gpu_memory_only_with_cuda(monkeypatch):
    import torch

    from training.callbacks import gpu_memory

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_memory() == {}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda: 3 * 2**30 + 2**19)
    monkeypatch.setattr(torch.cuda, "max_memory_reserved", lambda: 4 * 2**30)
    assert gpu_memory() == {"peak_gpu_memory_mb": 3072.5, "peak_gpu_reserved_mb": 4096.0}
