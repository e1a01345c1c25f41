"""Multiple-choice tasks (webmill.train.tasks): scoring, truncation, acc vs acc_norm, a learnable
task on a trained checkpoint, format errors, dataset converters."""

import json
import math

import numpy as np
import pytest
import tiktoken
import torch
from test_train_helpers import REPO, make_shards, one_thread  # noqa: F401

from webmill.errors import UserError
from webmill.train.checkpoint import load_checkpoint
from webmill.train.loop import TrainConfig, train
from webmill.train.model import GPT, GPTConfig
from webmill.train.sample import Tokenizer
from webmill.train.tasks import (
    TaskItem,
    choice_loglikelihoods,
    encode_pair,
    evaluate_tasks,
    from_arc,
    from_hellaswag,
    from_piqa,
    load_task,
)

# A real tiktoken Encoding over single bytes (no merges): 256 byte ids + EOT 256, vocab 257.
BYTES = tiktoken.Encoding(name="bytes-test", pat_str=r"\S+|\s+",
                          mergeable_ranks={bytes([i]): i for i in range(256)},
                          special_tokens={"<|endoftext|>": 256})
VOCAB = 257
EXAMPLE_TASK = REPO / "examples" / "tasks" / "simple_english.jsonl"


def tiny_gpt(block_size=32, seed=0):
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=VOCAB, block_size=block_size, n_layer=2, n_head=2, n_embd=32))


def write_task(path, items):
    path.write_text("".join(json.dumps(it) + "\n" for it in items))
    return path


def direct_logprob(model, ids, n_cont):
    """Sum of log_softmax at the last n_cont targets of ids, one unbatched forward (independent check)."""
    x = torch.tensor([ids[:-1]])
    with torch.no_grad():
        logits, _ = model.eval()(x)
    logp = torch.log_softmax(logits[0].double(), dim=-1)
    return sum(float(logp[p, ids[p + 1]]) for p in range(len(ids) - 1 - n_cont, len(ids) - 1))


def test_scores_match_direct_log_softmax():
    model = tiny_gpt(block_size=64)  # no truncation here
    items = [TaskItem("The cat sat on the", ("mat", "moon", "a very long ledge of stone"), 0, line=1),
             TaskItem("Two plus two is ", ("four", "five"), 0, line=2),  # trailing space moves to the choice
             TaskItem("", ("hello", "bye"), 1, line=3)]  # empty context: EOT stands for it
    model.train()
    got = choice_loglikelihoods(model, BYTES, items, batch_size=3)  # 7 requests: padded batches of 3
    assert model.training  # mode restored
    for item, scores in zip(items, got):
        for choice, score in zip(item.choices, scores):
            ctx = list(item.context.rstrip().encode()) or [256]
            cont = list((item.context[len(item.context.rstrip()):] + " " + choice).encode())
            assert score == pytest.approx(direct_logprob(model, ctx + cont, len(cont)), abs=1e-4)
            assert score < 0
    # batch size does not change the answer beyond float noise; the same call is bit-identical
    one = choice_loglikelihoods(model, BYTES, items, batch_size=1)
    assert np.allclose(sum(got, []), sum(one, []), atol=1e-4)
    assert got == choice_loglikelihoods(model, BYTES, items, batch_size=3)


def test_encode_pair_follows_lm_eval():
    from webmill.tokenize.encoding import get_encoding

    enc = get_encoding("cl100k_base")  # a real BPE: " Paris" is one token
    ctx, cont = encode_pair(enc, "Question: capital of France?\nAnswer:", "Paris")
    assert enc.decode(cont) == " Paris" and cont == enc.encode_ordinary(" Paris")
    assert enc.decode(ctx) == "Question: capital of France?\nAnswer:"
    ctx2, cont2 = encode_pair(enc, "Answer: ", "Paris")  # trailing space joins the continuation
    assert enc.decode(ctx2) == "Answer:" and enc.decode(cont2) == "  Paris"
    assert encode_pair(Tokenizer(enc, 100257), "", "Paris") == ([100257], enc.encode_ordinary(" Paris"))
    with pytest.raises(UserError, match="empty context"):
        encode_pair(Tokenizer(enc, None), "", "Paris")
    model = GPT(GPTConfig(vocab_size=enc.n_vocab, block_size=8, n_layer=1, n_head=1, n_embd=8))
    with pytest.raises(UserError, match=r"t\.jsonl:4: the context is empty and the tokenizer has no EOT id"):
        choice_loglikelihoods(model, Tokenizer(enc, None), [TaskItem(" ", ("a", "b"), 0, line=4)], where="t.jsonl")


def test_left_truncation_keeps_the_choice_whole():
    model = tiny_gpt(block_size=16)
    context = "a long context that is far longer than sixteen bytes of model context"
    choice = "whole choice"  # 13 bytes with the space: fits in 16
    scores = choice_loglikelihoods(model, BYTES, [TaskItem(context, (choice, "x"), 0)])
    full = list(context.encode()) + list((" " + choice).encode())
    window = full[-17:]  # block_size + 1 tokens: the context is cut on the left
    assert scores[0][0] == pytest.approx(direct_logprob(model, window, 13), abs=1e-4)
    with pytest.raises(UserError, match=r"t\.jsonl:7: choice 1 is 21 tokens, longer than the model's context of 16"):
        choice_loglikelihoods(model, BYTES, [TaskItem("ctx", ("ok", "twenty bytes of text"), 0, line=7)],
                              where="t.jsonl")
    from webmill.tokenize.encoding import get_encoding

    with pytest.raises(UserError, match=r"t\.jsonl:2: the tokenizer gives id \d+ but the model has 257 ids"):
        choice_loglikelihoods(model, get_encoding("cl100k_base"), [TaskItem("ctx", ("ok", "no"), 0, line=2)],
                              where="t.jsonl")


def test_acc_and_acc_norm_differ_on_long_vs_short(tmp_path):
    # All-zero output head: every token has log-probability -ln(257) exactly. A choice of b bytes
    # scores -(b + 1) ln 257 (the space is a token too): acc prefers the short choice, acc_norm
    # (per byte, -(1 + 1/b) ln 257) the long one.
    model = tiny_gpt()
    with torch.no_grad():
        model.lm_head.weight.zero_()
    scores = choice_loglikelihoods(model, BYTES, [TaskItem("Pick one:", ("no", "a much longer answer"), 1)])
    assert scores[0] == pytest.approx([-3 * math.log(VOCAB), -21 * math.log(VOCAB)], rel=1e-5)
    path = write_task(tmp_path / "long_short.jsonl", [
        {"context": "Pick one:", "choices": ["no", "a much longer answer"], "label": 1},
        {"context": "Pick again:", "choices": ["yes", "the longest answer here"], "label": 0},
        {"context": "And again:", "choices": ["ok", "a rather long answer"], "label": 1}])
    res = evaluate_tasks(model, BYTES, path)
    assert res["task"] == "long_short" and res["n"] == 3
    assert res["acc"] == pytest.approx(1 / 3) and res["acc_norm"] == pytest.approx(2 / 3)
    assert res["acc_stderr"] == pytest.approx(np.std([0, 1, 0], ddof=1) / math.sqrt(3))
    assert res["seconds"] > 0


THINGS = ["apple", "banana", "cherry", "lemon", "lime", "plum", "grape", "melon", "pear", "kiwi",
          "fig", "olive", "carrot", "tomato", "pepper", "onion", "leek", "bean", "pea", "corn"]
COLOURS = ["red", "green", "blue", "yellow"]


def test_learnable_task_on_a_trained_checkpoint(tmp_path):
    # Each thing gets an arbitrary colour, 5 things per colour, so a model that ignores the thing
    # scores 25 %; documents are the 20 facts in random orders. The task asks each fact back.
    rng = np.random.default_rng(0)
    colour = {t: COLOURS[c] for t, c in zip(THINGS, rng.permutation(np.arange(len(THINGS)) % 4))}
    facts = [f"the colour of the {t} is {c}." for t, c in colour.items()]

    def doc(seed):
        order = np.random.default_rng(seed).permutation(len(facts))
        return np.array(BYTES.encode_ordinary(" ".join(facts[i] for i in order)))

    make_shards(tmp_path / "shards", {"train": [doc(s) for s in range(40)], "val": [doc(1000 + s) for s in range(4)]},
                VOCAB, row_group_rows=4)
    steps = 400
    train(TrainConfig(shards=str(tmp_path / "shards"), out=str(tmp_path / "run"), n_layer=2, n_head=4, n_embd=64,
                      block_size=64, micro_batch=8, max_steps=steps, warmup_steps=20, lr=3e-3, eval_every=steps,
                      val_tokens=512, sample_every=0, ckpt_every=steps, quiet=True, tensorboard=False))
    state = load_checkpoint(tmp_path / "run")
    model = GPT(GPTConfig.from_dict(state["model_config"]))
    model.load_state_dict(state["model"])

    items = [{"id": t, "context": f"the colour of the {t} is", "choices": COLOURS, "label": COLOURS.index(c)}
             for t, c in colour.items()]
    res = evaluate_tasks(model, BYTES, write_task(tmp_path / "colours.jsonl", items))
    assert res["n"] == 20 and res["acc"] >= 0.8, res  # chance: 0.25
    # Untrained model of the same shape: near chance, so the accuracy above is learned.
    untrained = GPT(GPTConfig.from_dict(state["model_config"]))
    assert evaluate_tasks(untrained, BYTES, tmp_path / "colours.jsonl")["acc"] <= 0.5
    # Labels permuted across items (still 5 per colour): the trained model is at chance level.
    perm = np.random.default_rng(1).permutation(len(items))
    shuffled = [{**it, "label": items[p]["label"]} for it, p in zip(items, perm)]
    agree = np.mean([a["label"] == b["label"] for a, b in zip(items, shuffled)])
    res_shuffled = evaluate_tasks(model, BYTES, write_task(tmp_path / "shuffled.jsonl", shuffled))
    assert res_shuffled["acc"] <= 0.5 and abs(res_shuffled["acc"] - agree) <= 1 - res["acc"] + 1e-9


@pytest.mark.parametrize("line,message", [
    ('{"choices": ["a", "b"], "label": 0}', "missing key 'context'"),
    ('{"context": "c", "label": 0}', "missing key 'choices'"),
    ('{"context": "c", "choices": ["a", "b"]}', "missing key 'label'"),
    ('{"context": "c", "choices": ["a", "b"], "label": 2}', "label 2 is out of range for 2 choices"),
    ('{"context": "c", "choices": ["a", "b"], "label": -1}', "label -1 is out of range"),
    ('{"context": "c", "choices": ["a", "b"], "label": true}', "'label' must be an integer"),
    ('{"context": "c", "choices": ["a"], "label": 0}', "has 1 entries; a multiple-choice item needs at least 2"),
    ('{"context": "c", "choices": ["a", ""], "label": 0}', "choice 1 is empty"),
    ('{"context": "c", "choices": "ab", "label": 0}', "'choices' must be a list of strings"),
    ('{"context": 3, "choices": ["a", "b"], "label": 0}', "'context' must be a string"),
    ('["c", ["a", "b"], 0]', "expected a JSON object"),
    ('{"context": "c", "choices": ["a", "b"], "label": 0', "not valid JSON"),
])
def test_format_errors_name_file_and_line(tmp_path, line, message):
    good = '{"context": "c", "choices": ["a", "b"], "label": 1, "id": 7}'
    path = tmp_path / "bad.jsonl"
    path.write_text(good + "\n\n" + line + "\n")  # the bad item is on line 3 (a blank line 2)
    with pytest.raises(UserError) as e:
        load_task(path)
    assert str(e.value).startswith(f"{path}:3: ") and message in str(e.value)


def test_load_task_good_file_and_missing_or_empty(tmp_path):
    items = load_task(EXAMPLE_TASK)
    lines = [json.loads(x) for x in EXAMPLE_TASK.read_text().splitlines() if x.strip()]
    assert len(items) == len(lines) >= 20
    assert [(i.context, list(i.choices), i.label, i.id) for i in items] == \
        [(x["context"], x["choices"], x["label"], x["id"]) for x in lines]
    assert items[0].line == 1 and items[-1].line == len(lines)
    with pytest.raises(UserError, match="task file not found"):
        load_task(tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(UserError, match="empty.jsonl: no items"):
        load_task(tmp_path / "empty.jsonl")


def test_example_task_runs_end_to_end():
    model = tiny_gpt(block_size=64)
    res = evaluate_tasks(model, BYTES, EXAMPLE_TASK, batch_size=8)
    items = load_task(EXAMPLE_TASK)
    scores = choice_loglikelihoods(model, BYTES, items, batch_size=8)
    want = np.mean([int(np.argmax(s)) == it.label for s, it in zip(scores, items)])
    assert res["task"] == "simple_english" and res["n"] == len(items) and res["acc"] == want


def test_hellaswag_converter():
    row = {"ind": 24, "activity_label": "Roof shingle removal", "ctx_a": "A man is sitting on a roof.",
           "ctx_b": "he", "ctx": "A man is sitting on a roof. he", "split": "val", "split_type": "indomain",
           "endings": ["is using wrap to wrap a pair of skis.", "is ripping level tiles off.",
                       "is holding a rubik's cube.", "starts pulling up roofing on a roof."],
           "source_id": "activitynet~v_-JhWjGDPHMY", "label": "3"}
    assert from_hellaswag(row) == {
        "id": "24", "context": "Roof shingle removal: A man is sitting on a roof. He",
        "choices": row["endings"], "label": 3}
    wikihow = {**row, "activity_label": "Home and Garden", "ctx_a": "[header] How to clean a grill [title] Heat it.",
               "ctx_b": "", "endings": ["Scrub  the grates [substeps] well.", "b", "c", "d"], "label": "0"}
    item = from_hellaswag(wikihow)
    assert item["context"] == "Home and Garden: How to clean a grill. Heat it."
    assert item["choices"][0] == "Scrub the grates well."
    with pytest.raises(ValueError, match="unlabelled"):
        from_hellaswag({**row, "label": ""})


def test_arc_and_piqa_converters(tmp_path):
    arc = {"id": "Mercury_7175875", "question": "An astronomer observes that a planet rotates faster after a "
           "meteorite impact. Which is the most likely effect of this increase in rotation?",
           "choices": {"text": ["Planetary density will decrease.", "Planetary years will become longer.",
                                "Planetary days will become shorter.", "Planetary gravity will become stronger."],
                       "label": ["A", "B", "C", "D"]}, "answerKey": "C"}
    item = from_arc(arc)
    assert item["context"] == f"Question: {arc['question']}\nAnswer:" and item["label"] == 2
    assert item["choices"] == arc["choices"]["text"] and item["id"] == "Mercury_7175875"
    numeric = {**arc, "choices": {"text": ["a", "b", "c"], "label": ["1", "2", "3"]}, "answerKey": "1"}
    assert from_arc(numeric)["label"] == 0
    with pytest.raises(ValueError, match="answerKey 'E' not in choice labels"):
        from_arc({**arc, "answerKey": "E"})
    piqa = {"goal": "When boiling butter, when it's ready, you can",
            "sol1": "Pour it onto a plate", "sol2": "Pour it into a jar", "label": 1}
    assert from_piqa(piqa) == {"context": f"Question: {piqa['goal']}\nAnswer:",
                               "choices": ["Pour it onto a plate", "Pour it into a jar"], "label": 1}
    with pytest.raises(ValueError, match="piqa row has label=-1"):
        from_piqa({**piqa, "label": -1})
    # converted rows load as a task file
    hs = {"ind": 1, "activity_label": "Cooking", "ctx_a": "A man cuts an onion.", "ctx_b": "then he",
          "endings": ["fries it.", "sings.", "flies.", "sleeps."], "label": "0"}
    path = write_task(tmp_path / "mixed.jsonl", [from_arc(arc), from_piqa(piqa), from_arc(numeric), from_hellaswag(hs)])
    assert [i.label for i in load_task(path)] == [2, 1, 0, 0]


def test_task_file_on_fsspec_storage():
    from webmill.storage import Storage

    st = Storage("memory://webmill-test-tasks")
    st.write_text("arc.jsonl", EXAMPLE_TASK.read_text())
    items = load_task("memory://webmill-test-tasks/arc.jsonl")
    assert len(items) == len(load_task(EXAMPLE_TASK))
    res = evaluate_tasks(tiny_gpt(block_size=64), BYTES, "memory://webmill-test-tasks/arc.jsonl")
    assert res["task"] == "arc" and res["n"] == len(items)
    with pytest.raises(UserError, match=r"memory://webmill-test-tasks/nope\.jsonl: task file not found"):
        load_task("memory://webmill-test-tasks/nope.jsonl")
    bad = '{"context": "c", "choices": ["a", "b"], "label": 5}\n'
    st.write_text("bad.jsonl", bad)
    with pytest.raises(UserError, match=r"^memory://webmill-test-tasks/bad\.jsonl:1: label 5 is out of range"):
        load_task("memory://webmill-test-tasks/bad.jsonl")
    st.remove_tree("")
