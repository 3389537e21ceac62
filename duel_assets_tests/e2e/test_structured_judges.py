"""Structured judge replies (``judges.structured``): the judges ask for the judge-reply JSON schema;
``auto`` steps down to ``json_object`` + schema, then to free text, as the endpoint refuses;
``true`` never asks in free text. The stand-in answers a request with a response format in the
schema's JSON (as a grammar-constrained server does), so a judge that rambles in free text parses
once it asks for structure. Parse rates per judge and per format are in the step's metadata."""
import json

import pytest

from duel_assets.lib.duel.judging import reply_schema
from duel_assets_tests.conftest import materialize, metadata, query, standin_post

PANEL = '\n[judges]\nmodels = ["standin-judge-1", "standin-judge-garbage"]\nskip_decided = false\n'


def _chain(cfg, structured: str) -> None:
    text = cfg.read_text().replace('[judges]\nmodels = ["standin-judge-1"]\n', "")
    cfg.write_text(text + PANEL + f"structured = {structured}\n")


def _judge_bodies(srv) -> list[dict]:
    return [b for b in json.loads(_get(srv, "/_standin/bodies")) if "judge" in b["model"]]


def _get(srv, path: str) -> str:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{srv.port}{path}", timeout=10) as r:
        return r.read().decode()


@pytest.mark.parametrize("modes,structured,expected", [
    ([], "\"auto\"", "json_schema"),
    (["refuse-json-schema"], "\"auto\"", "json_object"),  # llama.cpp's 500: json_object + schema instead
    (["refuse-response-format"], "\"auto\"", "text"),  # no structure at all: free text, the garbage judge fails
])
def test_judges_ask_for_the_schema_and_step_down_as_the_endpoint_refuses(duel_env, instance, modes, structured, expected):
    srv, home = duel_env["standin"], duel_env["home"]
    _chain(duel_env["config"], structured)
    standin_post(srv, "/_standin/modes", {"modes": modes})
    standin_post(srv, "/_standin/bodies", {"keep": True})
    res = materialize(instance, "p")
    assert res.success
    md = metadata(res, "judge_scores")
    rates = md["parse_rate_by_judge_and_format"]
    assert set(rates) == {"standin-judge-1", "standin-judge-garbage"}
    assert all(set(by_format) == {expected} for by_format in rates.values()), rates
    garbage = rates["standin-judge-garbage"][expected]["rate"]
    assert garbage == (0.0 if expected == "text" else 1.0)
    assert rates["standin-judge-1"][expected]["rate"] == 1.0
    (formats,), = query(home, "SELECT list(DISTINCT reply_format) FROM duel.judge_scores")
    assert formats == [expected]
    if expected != "json_schema":
        assert md["llm_downgrades"] == {"response_format": 2}  # once per judge model, never again
    # what went over the wire: the judge-reply schema, as the endpoint takes it
    sent = [b for b in _judge_bodies(srv) if "response_format" in b]
    assert sent and all(b["response_format"]["type"] in ("json_schema", "json_object") for b in sent)
    if expected == "json_object":
        assert any(b["response_format"] == {"type": "json_object", "schema": reply_schema()} for b in sent)


def test_required_structure_is_never_asked_in_free_text(duel_env, instance):
    srv = duel_env["standin"]
    _chain(duel_env["config"], "true")
    standin_post(srv, "/_standin/modes", {"modes": ["refuse-response-format"]})
    standin_post(srv, "/_standin/bodies", {"keep": True})
    res = materialize(instance, "p", raise_on_error=False)
    assert not res.success  # every judge call refused: the step fails, saying why
    bodies = _judge_bodies(srv)
    assert bodies and all("response_format" in b for b in bodies)
    assert {b["response_format"]["type"] for b in bodies} == {"json_schema", "json_object"}
