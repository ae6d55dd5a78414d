"""`rag finetune`: LoRA-tune the answer decoder to copy a span, cite it, or abstain.

The model is the packaged decoder as the pipeline loads it (rag.models.decoder.HFGenerator: GGUF ->
bf16 weights), so the adapter is trained on exactly the weights it is merged into. Examples come
from rag.train.examples (training splits only, the pipeline's prompt format).

Why each step is cheap enough for a shared 2-core CPU:
- loss on the answer tokens only, and the lm_head applied only there (`logits_to_keep`): the
  151k-word vocabulary projection over a whole prompt would otherwise cost more than the model;
- bf16 weights with bf16 autocast, LoRA weights in float32 (peft keeps them so);
- LoRA on the top layers only: layers below the first adapted one need no backward pass;
- batch 1 with gradient accumulation: no padding is computed.
Runs are bounded (--max-minutes), show a progress bar, checkpoint every --save-every steps and
resume from the last checkpoint (--resume). A GPU is used when torch sees one."""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rag.errors import ConfigError
from rag.models.weights import ADAPTERS_DIR

from rag.train.examples import TRAIN_DIR

# Share of each example kind in a run (see rag.train.examples.Example.kind).
MIX = {"squad": 0.40, "squad_unans": 0.28, "squad_missing": 0.08, "hotpot": 0.10,
       "hotpot_missing": 0.04, "ko": 0.06, "ko_unans": 0.03, "ko_missing": 0.01}


@dataclass(frozen=True)
class FinetuneConfig:
    base: str = "qwen2.5-coder-0.5b"
    steps: int = 150
    accum: int = 4  # examples per optimizer step
    lr: float = 3e-4
    warmup: float = 0.06  # share of steps
    r: int = 16
    alpha: int = 32
    dropout: float = 0.0
    targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    top_layers: int = 0  # adapt only the top N layers; 0 = all
    max_tokens: int = 640  # longer examples are skipped
    width: int = 360  # characters per passage
    max_passages: int = 4
    seed: int = 0
    max_minutes: float = 45.0
    save_every: int = 10
    mix: dict[str, float] = field(default_factory=lambda: dict(MIX))

    def __post_init__(self):
        if self.steps < 1 or self.accum < 1:
            raise ConfigError("--steps and --accum must be at least 1")
        if self.r < 1:
            raise ConfigError("--r (LoRA rank) must be at least 1")


def encode(tok, messages: list[dict], target: str) -> tuple[list[int], int]:
    """Token ids of prompt + answer as the chat template renders them, and how many of the
    final ids are the answer (answer text + end-of-turn token) to train on."""
    prompt = _ids(tok.apply_chat_template(messages, add_generation_prompt=True))
    full = _ids(tok.apply_chat_template(messages + [{"role": "assistant", "content": target}]))
    if full[: len(prompt)] != prompt:
        raise ConfigError("the chat template renders the prompt differently with an answer appended")
    answer = full[len(prompt):]
    # cut what follows the end-of-turn token (a newline in ChatML): the model stops there
    end = tok.convert_tokens_to_ids(tok.eos_token) if tok.eos_token else None
    if end in answer:
        answer = answer[: answer.index(end) + 1]
    return prompt + answer, len(answer)


def _ids(x) -> list[int]:
    if hasattr(x, "keys"):
        x = x["input_ids"]
    return list(x)


def answer_loss(model, ids, n_target: int):
    """Mean cross-entropy over the answer tokens; the lm_head runs on those positions only."""
    import torch.nn.functional as F

    out = model(input_ids=ids, logits_to_keep=n_target + 1)
    logits = out.logits[:, :-1, :].float()
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, -n_target:].reshape(-1))


def add_lora(model, cfg: FinetuneConfig):
    from peft import LoraConfig, get_peft_model

    n_layers = model.config.num_hidden_layers
    layers = list(range(n_layers - cfg.top_layers, n_layers)) if cfg.top_layers else None
    lcfg = LoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=list(cfg.targets),
                      layers_to_transform=layers, layers_pattern="layers" if layers else None,
                      bias="none", task_type="CAUSAL_LM")
    return get_peft_model(model, lcfg)


def lr_at(step: int, cfg: FinetuneConfig) -> float:
    """Linear warm-up, then cosine decay to a tenth of the peak."""
    warm = max(1, int(cfg.steps * cfg.warmup))
    if step < warm:
        return cfg.lr * (step + 1) / warm
    t = (step - warm) / max(1, cfg.steps - warm)
    return cfg.lr * (0.1 + 0.45 * (1 + math.cos(math.pi * min(t, 1.0))))


def train(model, tok, examples, cfg: FinetuneConfig, work_dir: Path, resume: bool = False,
          progress: bool = True, log=print) -> dict:
    """Train the LoRA-wrapped `model` on `examples` (rag.train.examples.Example); checkpoints in
    work_dir/ckpt. Returns a summary (steps done, mean loss of the last steps, wall time)."""
    import torch
    from tqdm import tqdm

    device = next(model.parameters()).device
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    start, losses, wall_before = 0, [], 0.0
    ckpt = work_dir / "ckpt"
    if resume and (ckpt / "trainer.pt").exists():
        start, losses, wall_before = _load_checkpoint(model, opt, ckpt)
        log(f"resumed at step {start} from {ckpt}")
    encoded = (encode(tok, e.messages, e.target) for e in examples)
    stream = ((ids, n) for ids, n in encoded if len(ids) <= cfg.max_tokens)
    for _ in range(start * cfg.accum):  # skip what earlier runs consumed: same order, deterministic
        next(stream, None)
    model.train()
    t0 = time.perf_counter()
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, disable=not progress, desc="finetune")
    done = start
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg)
        total = 0.0
        for _ in range(cfg.accum):
            item = next(stream, None)
            if item is None:
                raise ConfigError(f"ran out of examples at step {step}; lower --steps or --accum")
            ids = torch.tensor([item[0]], device=device)
            with torch.autocast(device.type, dtype=torch.bfloat16):
                loss = answer_loss(model, ids, item[1]) / cfg.accum
            loss.backward()
            total += loss.item()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(total)
        bar.set_postfix(loss=f"{sum(losses[-10:]) / len(losses[-10:]):.3f}")
        done = step + 1
        out_of_time = time.perf_counter() - t0 > cfg.max_minutes * 60
        if done % cfg.save_every == 0 or done == cfg.steps or out_of_time:
            _save_checkpoint(model, opt, ckpt, done, losses, wall_before + time.perf_counter() - t0)
        if out_of_time:
            log(f"time limit of {cfg.max_minutes} min reached after step {done}; rerun with --resume to go on")
            break
    wall = wall_before + time.perf_counter() - t0
    return {"steps": done, "examples_seen": done * cfg.accum, "loss_last10": _mean(losses[-10:]),
            "loss_first10": _mean(losses[:10]), "wall_s": round(wall, 1), "losses": [round(x, 4) for x in losses]}


def _mean(xs):
    return round(sum(xs) / len(xs), 4) if xs else None


def _save_checkpoint(model, opt, ckpt: Path, step: int, losses: list, wall: float) -> None:
    """Atomic: write beside, then swap, so an interrupted save leaves the previous checkpoint."""
    import torch

    tmp = ckpt.with_name(ckpt.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    torch.save({"step": step, "opt": opt.state_dict(), "losses": losses, "wall": wall}, tmp / "trainer.pt")
    old = ckpt.with_name(ckpt.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if ckpt.exists():
        os.replace(ckpt, old)
    os.replace(tmp, ckpt)
    shutil.rmtree(old, ignore_errors=True)


def _load_checkpoint(model, opt, ckpt: Path):
    import torch
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    set_peft_model_state_dict(model, load_file(str(ckpt / "adapter_model.safetensors")))
    state = torch.load(ckpt / "trainer.pt", weights_only=False)
    opt.load_state_dict(state["opt"])
    return state["step"], state["losses"], state["wall"]


def save_adapter(model, out: Path, base: str, meta: dict) -> None:
    """Write adapter_config.json + adapter_model.safetensors + rag_adapter.json (which rag.models.adapter
    checks against the decoder before loading)."""
    from rag.models.adapter import META

    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    conf = json.loads((tmp / "adapter_config.json").read_text())
    conf["base_model_name_or_path"] = base  # not a local path: the base comes from rag.models.weights
    (tmp / "adapter_config.json").write_text(json.dumps(conf, indent=1, sort_keys=True))
    (tmp / META).write_text(json.dumps({"base": base, **meta}, indent=1, ensure_ascii=False))
    for stray in tmp.glob("README.md"):
        stray.unlink()
    if out.exists():
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, out)


# -- CLI ------------------------------------------------------------------------------------
def cmd_finetune(args) -> int:
    import torch

    from rag.config import Settings
    from rag.train.examples import build_examples, mix
    from rag.models.decoder import HFGenerator

    s = Settings()
    cfg = FinetuneConfig(base=args.base or s.decoder, steps=args.steps, accum=args.accum, lr=args.lr, r=args.r,
                         alpha=args.alpha or 2 * args.r, targets=tuple(args.targets.split(",")),
                         top_layers=args.top_layers, max_minutes=args.max_minutes, seed=args.seed,
                         save_every=args.save_every, width=args.width, max_passages=args.max_passages)
    gen = HFGenerator(cfg.base, s.models_path, None, s.threads, "bfloat16")
    model, tok = gen.model, gen.tokenizer  # bf16, exactly the weights the pipeline merges into
    if torch.cuda.is_available():
        model = model.to("cuda")
    model = add_lora(model, cfg)
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(f"{cfg.base}: LoRA r={cfg.r} on {','.join(cfg.targets)} of "
          f"{cfg.top_layers or 'all'} layers, {n_train / 1e6:.2f}M trainable parameters")
    examples = build_examples(args.train_dir, cfg.seed, cfg.width, cfg.max_passages)
    picked = mix(examples, int(cfg.steps * cfg.accum * 1.1) + 8, cfg.mix, cfg.seed)
    if args.bench:
        cfg = FinetuneConfig(**{**asdict(cfg), "steps": args.bench, "targets": cfg.targets})
    work = s.data_dir / "finetune" / cfg.base / ("bench" if args.bench else "")
    summary = train(model, tok, picked, cfg, work, resume=args.resume and not args.bench)
    if args.bench:
        per = summary["wall_s"] / summary["steps"]
        print(json.dumps({"s_per_step": round(per, 2), "s_per_example": round(per / cfg.accum, 2), **summary}))
        return 0
    out = args.out or ADAPTERS_DIR / cfg.base
    kinds = {k: sum(e.kind == k for e in picked[: summary["examples_seen"]]) for k in cfg.mix}
    meta = {"config": {**asdict(cfg), "targets": list(cfg.targets)}, "train_dir": str(args.train_dir),
            "examples_by_kind": kinds, "device": str(next(model.parameters()).device),
            "threads": torch.get_num_threads(), **{k: v for k, v in summary.items() if k != "losses"}}
    save_adapter(model, out, cfg.base, meta)
    (work / "losses.json").write_text(json.dumps(summary["losses"]))
    print(json.dumps({"adapter": str(out), **{k: v for k, v in summary.items() if k != "losses"}}))
    return 0


def register(sub) -> None:
    a = sub.add_parser("finetune", help="LoRA-tune the answer decoder (cite or abstain) on the training data")
    a.add_argument("--base", default=None, help="decoder to tune (default: RAG_DECODER); smollm2-135m is the light one")
    a.add_argument("--train-dir", type=Path, default=TRAIN_DIR, help="training folders (squad2/, hotpotqa/)")
    a.add_argument("--out", type=Path, default=None, help="adapter folder (default: rag/models/adapters/<base>)")
    a.add_argument("--steps", type=int, default=FinetuneConfig.steps)
    a.add_argument("--accum", type=int, default=FinetuneConfig.accum, help="examples per optimizer step")
    a.add_argument("--lr", type=float, default=FinetuneConfig.lr)
    a.add_argument("--r", type=int, default=FinetuneConfig.r, help="LoRA rank")
    a.add_argument("--alpha", type=int, default=None, help="LoRA alpha (default 2*r)")
    a.add_argument("--targets", default=",".join(FinetuneConfig.targets), help="module names to adapt")
    a.add_argument("--top-layers", type=int, default=FinetuneConfig.top_layers, help="adapt only the top N layers")
    a.add_argument("--width", type=int, default=FinetuneConfig.width, help="characters per passage")
    a.add_argument("--max-passages", type=int, default=FinetuneConfig.max_passages)
    a.add_argument("--max-minutes", type=float, default=FinetuneConfig.max_minutes, help="stop (and save) after this")
    a.add_argument("--save-every", type=int, default=FinetuneConfig.save_every, help="checkpoint interval, steps")
    a.add_argument("--seed", type=int, default=FinetuneConfig.seed)
    a.add_argument("--resume", action="store_true", help="go on from the last checkpoint in <data_dir>/finetune/")
    a.add_argument("--bench", type=int, default=0, metavar="K", help="time K steps and print s/step; saves nothing")
    a.set_defaults(fn=cmd_finetune)
