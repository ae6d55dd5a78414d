"""The OpenAI-compatible endpoint, driven by the official `openai` client (over the test
client's transport, so no socket is opened): shape, streaming, citations, isolation."""

from __future__ import annotations

import pytest
from api_helpers import ADMIN, seeded_app

openai = pytest.importorskip("openai", reason="the openai client is an optional test dependency")

QUESTION = "Who designed the Harbor Point Lighthouse?"


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    for client, keys, _tmp in seeded_app(tmp_path_factory, "apioai"):
        yield client, keys


def oai(client, key):
    return openai.OpenAI(base_url="http://testserver/v1", api_key=key, http_client=client, max_retries=0)


def test_non_stream_shape_and_citations(api):
    client, keys = api
    r = oai(client, keys["alpha_reader"]).chat.completions.create(
        model="alpha", messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": QUESTION}])
    assert r.object == "chat.completion" and r.model == "alpha"
    msg = r.choices[0].message
    assert msg.role == "assistant" and r.choices[0].finish_reason == "stop"
    assert "Sources:" in msg.content and "lighthouse.txt" in msg.content
    extra = r.model_extra
    assert extra["citations"] and extra["citations"][0]["source"].endswith("lighthouse.txt")
    assert extra["rag"]["abstained"] is False and extra["rag"]["level"] == "answered"


def test_stream_shape(api):
    client, keys = api
    stream = oai(client, keys["alpha_reader"]).chat.completions.create(
        model="alpha", messages=[{"role": "user", "content": QUESTION}], stream=True)
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert "1874" in text and "Sources:" in text
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert chunks[-1].model_extra["citations"]


def test_models_and_isolation(api):
    client, keys = api
    c = oai(client, keys["alpha_reader"])
    assert [m.id for m in c.models.list()] == ["alpha"]
    with pytest.raises(openai.PermissionDeniedError):
        c.chat.completions.create(model="beta", messages=[{"role": "user", "content": "Zephyr launch code?"}])
    with pytest.raises(openai.AuthenticationError):
        oai(client, "nope").chat.completions.create(model="alpha", messages=[{"role": "user", "content": QUESTION}])
    # asked through alpha, beta's secret never shows, whoever asks
    r = oai(client, ADMIN).chat.completions.create(
        model="alpha", messages=[{"role": "user", "content": "What is the secret launch code of Project Zephyr?"}])
    assert "7421" not in r.choices[0].message.content and "zephyr.txt" not in str(r.model_extra)


def test_no_user_message_is_400(api):
    client, keys = api
    with pytest.raises(openai.BadRequestError):
        oai(client, keys["alpha_reader"]).chat.completions.create(
            model="alpha", messages=[{"role": "system", "content": "hello"}])


def test_a_caveat_answer_says_so_in_the_message_content():
    from rag.api.openai import sources_text
    from rag.types import Answer, Citation

    cite = (Citation(1, 7, "/srv/uploads/notes.txt", "It was automated in 1962."),)
    a = Answer("When?", "1962 [1]", cite, (), False, "m", {}, trace={"caveat": "The system is 37% sure."})
    text = sources_text(a)
    assert text.index("Low confidence: The system is 37% sure.") < text.index("Sources:")
    assert "notes.txt" in text and "/srv/" not in text
