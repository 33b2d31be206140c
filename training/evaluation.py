"""The generation evaluation: base and trained model answer held-out prompts, a judge compares
each pair twice with the positions swapped, and the trained model's win rate is stored.

The judge is a rule (training.rewards, e.g. "max_sentences:3" — answer in at most three
sentences). A rule judge cannot have a position bias, but it is still asked both ways so a
future model judge slots in with the same bookkeeping: a pair only counts as a win when the
trained answer wins in both orders; disagreement is a tie.
"""

from __future__ import annotations

import contextlib

import torch

from .models import TrainingRun
from .rewards import judge_pair, rule_score

SAMPLES_KEPT = 5


def render_prompt(tokenizer, prompt) -> str:
    """A prompt as the model sees it: the chat template where the tokenizer has one, else
    the instruction template of DESIGN.md."""
    messages = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    text = "\n\n".join(m["content"] for m in messages if m["role"] != "assistant")
    return f"### Instruction:\n{text}\n\n### Response:\n"


@torch.no_grad()
def generate_answers(model, tokenizer, prompts: list, max_new_tokens: int) -> list[str]:
    model.eval()
    device = next(model.parameters()).device
    answers = []
    for prompt in prompts:
        encoded = tokenizer(render_prompt(tokenizer, prompt), return_tensors="pt",
                            add_special_tokens=False).to(device)
        output = model.generate(
            **encoded, max_new_tokens=max_new_tokens, do_sample=False,
            pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        )
        answers.append(tokenizer.decode(output[0, encoded["input_ids"].shape[1]:],
                                        skip_special_tokens=True).strip())
    return answers


@contextlib.contextmanager
def base_model_of(run: TrainingRun, trained_model):
    """The base model to compare against: the adapter switched off when the run trained one
    (no second copy in memory), else the base folder loaded afresh."""
    if hasattr(trained_model, "disable_adapter"):
        with trained_model.disable_adapter():
            yield trained_model
        return
    from transformers import AutoModelForCausalLM

    device = next(trained_model.parameters()).device
    dtype = next(trained_model.parameters()).dtype
    base = AutoModelForCausalLM.from_pretrained(run.base_model.path, dtype=dtype).to(device)
    try:
        yield base
    finally:
        del base


def compare(rule: str, prompts: list, base_answers: list[str], trained_answers: list[str]) -> dict:
    wins = losses = ties = 0
    samples = []
    for prompt, base, trained in zip(prompts, base_answers, trained_answers):
        first = judge_pair(rule, trained, base)           # trained shown first
        second = judge_pair(rule, base, trained)          # positions swapped
        trained_first = first == "first"
        trained_second = second == "second"
        if trained_first and trained_second:
            outcome, wins = "win", wins + 1
        elif first == "second" and second == "first":
            outcome, losses = "loss", losses + 1
        else:
            outcome, ties = "tie", ties + 1
        if len(samples) < SAMPLES_KEPT:
            samples.append({"prompt": prompt, "base": base, "trained": trained, "outcome": outcome})
    n = max(len(prompts), 1)
    return {
        "judge": {"kind": "rule", "rule": rule},
        "prompts": len(prompts), "wins": wins, "losses": losses, "ties": ties,
        "win_rate": (wins + 0.5 * ties) / n,
        "base_rule_score": sum(rule_score(rule, a) for a in base_answers) / n,
        "trained_rule_score": sum(rule_score(rule, a) for a in trained_answers) / n,
        "samples": samples,
    }


def generation_evaluation(run: TrainingRun, trained_model, tokenizer, log) -> dict:
    from .trainer import held_out_prompts

    config = run.config
    prompts = held_out_prompts(run, config["generation_eval_prompts"])
    if not prompts:
        return {"prompts": 0, "win_rate": None}
    tokens = config["generation_max_new_tokens"]
    trained = generate_answers(trained_model, tokenizer, prompts, tokens)
    with base_model_of(run, trained_model) as base_model:
        base = generate_answers(base_model, tokenizer, prompts, tokens)
    result = compare(config["judge_rule"], prompts, base, trained)
    log(f"generation evaluation on {len(prompts)} held-out prompts, judge "
        f"{config['judge_rule']}: win rate {result['win_rate']:.2f} "
        f"({result['wins']} wins, {result['losses']} losses, {result['ties']} ties)")
    return result
