"""LoRA fine-tuning plumbing on a tiny llama built in code (no packaged weights needed):
the same encode/train/save code as `rag finetune`, then reload, merge, and compare."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from rag.models.adapter import apply_adapter  # noqa: E402
from rag.errors import ModelError  # noqa: E402
from rag.train.finetune import FinetuneConfig, add_lora, encode, save_adapter, train  # noqa: E402
from rag.train.examples import Example, build_examples, korean_examples  # noqa: E402
from rag.answer.prompt import ABSTAIN, build_messages, is_abstention  # noqa: E402

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def tiny_tokenizer():
    """Byte-level tokenizer with ChatML special tokens: every string encodes, Korean included."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {ch: i for i, ch in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    t = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    t.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(tokenizer_object=t, eos_token="<|im_end|>", pad_token="<|im_end|>")
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>"]})
    tok.chat_template = CHATML
    return tok


def tiny_llama(tok):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.eos_token_id)
    # float32 here so merged and unmerged can be compared tightly (the service merges into bf16
    # weights, which rounds W + BA once); training still runs under bf16 autocast
    return LlamaForCausalLM(cfg)


def tiny_generator():
    """An HFGenerator around the tiny llama: the service's decoder code without packaged weights."""
    from rag.models.decoder import HFGenerator

    tok = tiny_tokenizer()
    gen = HFGenerator("tiny", cache_dir=None)
    gen._model, gen._tok = tiny_llama(tok).eval(), tok
    return gen


def examples():
    import random

    return korean_examples(random.Random(0), repeats=1)


def test_encode_trains_only_on_the_answer_and_its_end_token():
    tok = tiny_tokenizer()
    msgs = build_messages("When?", [])
    ids, n = encode(tok, msgs, "1912 [2]")
    assert tok.decode(ids[-n:]) == "1912 [2]<|im_end|>"
    prompt = tok.apply_chat_template(msgs, add_generation_prompt=True)
    assert ids[:-n] == list(prompt["input_ids"] if hasattr(prompt, "keys") else prompt)


def test_korean_set_answers_are_spans_and_abstentions_are_recognised():
    ex = examples()
    assert {e.kind for e in ex} >= {"ko", "ko_unans"}
    for e in ex:
        if e.kind == "ko":
            # the target is the bare phrase (the pipeline cites the passage holding it)
            assert "[" not in e.target
            assert e.target in e.messages[1]["content"].split("Question:", 1)[0]
        else:
            assert is_abstention(e.target)


def test_dev_folders_are_refused(tmp_path):
    with pytest.raises(ValueError, match="dev"):
        build_examples(tmp_path / "dev")


def test_two_steps_save_reload_and_merge_give_identical_outputs(tmp_path):
    tok = tiny_tokenizer()
    model = tiny_llama(tok)
    cfg = FinetuneConfig(base="tiny-llama", steps=2, accum=2, lr=1e-2, r=4, alpha=8, top_layers=1,
                         max_tokens=4096, save_every=1, targets=("q_proj", "v_proj", "down_proj"))
    peft_model = add_lora(model, cfg)
    trainable = {n for n, p in peft_model.named_parameters() if p.requires_grad}
    assert trainable and all(".layers.1." in n for n in trainable)  # top layer only
    before = {n: p.detach().clone() for n, p in peft_model.named_parameters() if p.requires_grad}
    summary = train(peft_model, tok, examples(), cfg, tmp_path / "work", progress=False)
    assert summary["steps"] == 2 and (tmp_path / "work" / "ckpt" / "trainer.pt").exists()
    changed = [n for n, p in peft_model.named_parameters() if p.requires_grad and not torch.equal(p, before[n])]
    assert changed, "training did not update the LoRA weights"

    out = tmp_path / "adapter"
    save_adapter(peft_model, out, "tiny-llama", {"steps": summary["steps"]})
    assert json.loads((out / "rag_adapter.json").read_text())["base"] == "tiny-llama"
    assert (out / "adapter_model.safetensors").exists()

    ids = torch.tensor([encode(tok, examples()[0].messages, ABSTAIN)[0]])
    peft_model.eval()
    with torch.no_grad():
        unmerged = peft_model(input_ids=ids).logits.float()
        # a fresh base (same seed = same weights) + the saved adapter, merged as the service does
        merged_model = apply_adapter(tiny_llama(tok), out, "tiny-llama").eval()
        merged = merged_model(input_ids=ids).logits.float()
        base = tiny_llama(tok).eval()(input_ids=ids).logits.float()
    assert not any("lora" in n for n, _ in merged_model.named_parameters())  # really merged
    assert not torch.allclose(base, unmerged)  # the adapter changes the model
    assert torch.allclose(merged, unmerged, atol=1e-5)
    prompt = ids[:, :-3]
    gen = dict(max_new_tokens=8, do_sample=False, pad_token_id=tok.eos_token_id)
    with torch.no_grad():
        assert torch.equal(merged_model.generate(prompt, **gen), peft_model.generate(input_ids=prompt, **gen))


def test_resume_continues_from_the_checkpoint(tmp_path):
    tok = tiny_tokenizer()
    cfg = FinetuneConfig(base="tiny-llama", steps=2, accum=1, r=2, save_every=1, max_tokens=4096)
    train(add_lora(tiny_llama(tok), cfg), tok, examples(), cfg, tmp_path, progress=False)
    more = FinetuneConfig(**{**cfg.__dict__, "steps": 3})
    logs = []
    summary = train(add_lora(tiny_llama(tok), more), tok, examples(), more, tmp_path, resume=True,
                    progress=False, log=logs.append)
    assert summary["steps"] == 3 and len(summary["losses"]) == 3 and "resumed at step 2" in logs[0]


def test_adapter_for_another_base_is_refused(tmp_path):
    tok = tiny_tokenizer()
    cfg = FinetuneConfig(base="tiny-llama", steps=1, r=2)
    save_adapter(add_lora(tiny_llama(tok), cfg), tmp_path / "a", "smollm2-135m", {})
    with pytest.raises(ModelError, match="trained on 'smollm2-135m'"):
        apply_adapter(tiny_llama(tok), tmp_path / "a", "qwen2.5-coder-0.5b")
    with pytest.raises(ModelError, match="not an adapter"):
        apply_adapter(tiny_llama(tok), tmp_path, "qwen2.5-coder-0.5b")


def test_example_type_is_frozen():
    e = Example([], "x", "ko")
    with pytest.raises(Exception):
        e.target = "y"  # type: ignore[misc]


def test_korean_training_set_is_disjoint_from_the_korean_test_and_sample_corpora():
    """Nothing evaluated on may be trained on: no shared topic (title) and no shared run of
    5 words with the Korean test corpus or the shipped sample corpus."""
    from rag.train.examples import KOREAN_SET
    from tests.conftest import REPO, SAMPLE

    def runs(text, n=5):
        w = text.split()
        return {" ".join(w[i:i + n]) for i in range(len(w) - n + 1)}

    train = [json.loads(line) for line in open(KOREAN_SET, encoding="utf-8")]
    test_docs = [json.loads(line) for line in open(REPO / "tests" / "data" / "ko" / "corpus.jsonl", encoding="utf-8")]
    held = [d["text"] for d in test_docs] + [p.read_text(encoding="utf-8") for p in SAMPLE.iterdir()]
    held_titles = {d["title"] for d in test_docs}
    held_runs = set().union(*(runs(t) for t in held))
    for it in train:
        assert it["title"] not in held_titles
        assert not runs(it["text"]) & held_runs, it["title"]
