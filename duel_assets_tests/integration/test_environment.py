""".env, endpoint families, the hub token, masking, and DuelSettings as the one owner of the environment."""
import ast
from pathlib import Path

import dagster as dg
import pytest

from duel_assets.defs.resources import LLMResource, build_resources
from duel_assets.defs.settings import DuelSettings
from duel_assets.lib.settings import CHUTES_BASE_URL, env, mask_url, resolve_endpoint, secret_values
from duel_assets_tests.conftest import REPO

LIB = REPO / "duel_assets" / "lib"
VARS = ("LLM_BASE_URL", "LLM_API_KEY", "CHUTES_BASE_URL", "CHUTES_API_KEY", "OPENAI_BASE_URL", "OPENAI_API_KEY",
        "HF_TOKEN", "HUGGINGFACE_API_KEY", "DUEL_MODE", "DUEL_CONFIG", "DUEL_HOME", "DUEL_WAREHOUSE")
# reads of the environment in modules this workstream does not own; each should receive a value
# from DuelSettings instead (see the report): the list may only shrink
PENDING: dict = {}


@pytest.fixture
def clean_env(tmp_path, monkeypatch):
    for v in VARS:
        monkeypatch.delenv(v, raising=False)
    monkeypatch.setattr(env, "_from_dotenv", {})
    monkeypatch.setattr(env, "_aliased", {})
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _environment_reads(path: Path) -> set[str]:
    """Variables a module reads through os.environ / os.getenv ("?" for any other use of them)."""
    tree = ast.parse(path.read_text())
    uses = {id(n) for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr in ("environ", "getenv")
            and isinstance(n.value, ast.Name) and n.value.id == "os"}
    names = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute):
            inner = n.func.value if n.func.attr == "get" else n.func
            arg = n.args[0] if n.args else None
        elif isinstance(n, ast.Subscript):
            inner, arg = n.value, n.slice
        else:
            continue
        if id(inner) in uses and isinstance(arg, ast.Constant):
            names.add(arg.value)
            uses.discard(id(inner))
    return names | ({"?"} if uses else set())


def test_only_the_settings_env_module_reads_the_environment():
    found = {}
    for f in sorted(LIB.rglob("*.py")):
        reads = _environment_reads(f)
        if reads and f != LIB / "settings" / "env.py":
            found[f.name] = reads
    assert found == PENDING, found


def test_dotenv_is_loaded_and_the_environment_wins(clean_env, monkeypatch):
    (clean_env / ".env").write_text("CHUTES_API_KEY=from-dotenv-key\nDUEL_MODE=1\n# a comment\n")
    monkeypatch.setenv("DUEL_MODE", "2")
    added = env.apply_environment()
    assert added == {"CHUTES_API_KEY": "from-dotenv-key"}
    assert env.duel_mode() == 2
    assert env.origin("CHUTES_API_KEY") == ".env" and env.origin("DUEL_MODE") == "environment"
    assert env.dotenv_files() == {str(clean_env / ".env"): ["CHUTES_API_KEY"]}


def test_chutes_key_alone_selects_chutes_and_families_keep_their_order(clean_env, monkeypatch):
    assert resolve_endpoint() is None
    monkeypatch.setenv("CHUTES_API_KEY", "cpk-1234")
    ep = resolve_endpoint()
    assert (ep.base_url, ep.api_key) == (CHUTES_BASE_URL, "cpk-1234") and "CHUTES_API_KEY" in ep.source
    monkeypatch.setenv("OPENAI_BASE_URL", "https://openai.example/v1/")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-o")
    ep = resolve_endpoint()
    assert (ep.base_url, ep.api_key, ep.source) == ("https://openai.example/v1", "sk-o", "OPENAI_BASE_URL")
    monkeypatch.setenv("LLM_BASE_URL", "http://127.0.0.1:9/v1")
    assert resolve_endpoint().source == "LLM_BASE_URL" and resolve_endpoint().api_key == ""


def test_huggingface_api_key_is_read_as_hf_token(clean_env, monkeypatch):
    monkeypatch.setenv("HUGGINGFACE_API_KEY", "hf_train_data_token")
    env.apply_environment()
    assert env.getenv("HF_TOKEN") == "hf_train_data_token"
    assert env.origin("HF_TOKEN") == "HUGGINGFACE_API_KEY (environment)"
    monkeypatch.setenv("HF_TOKEN", "hf_own")
    assert DuelSettings.from_environment().token() == "hf_own"  # HF_TOKEN, when set, wins


def test_urls_are_shown_without_credentials_and_their_secrets_scrubbed(clean_env, monkeypatch):
    url = "https://user:sk-in-the-url-9f@llm.example.com/v1?api_key=qsecret123&x=1"
    shown = mask_url(url)
    assert "sk-in-the-url-9f" not in shown and "qsecret123" not in shown and "user" not in shown
    assert shown.startswith("https://***@llm.example.com/v1")
    monkeypatch.setenv("LLM_BASE_URL", url)
    assert {"sk-in-the-url-9f", "qsecret123"} <= set(secret_values())


def test_settings_hold_values_and_secrets_as_envvars(clean_env, monkeypatch):
    monkeypatch.setenv("CHUTES_API_KEY", "cpk-secret-777")
    monkeypatch.setenv("DUEL_HOME", str(clean_env / "home"))
    monkeypatch.setenv("DUEL_MODE", "1")
    s = DuelSettings.from_environment()
    assert s.duel_home == str(clean_env / "home") and s.duel_mode == 1 and s.config_env == {"DUEL_MODE": "1"}
    assert s.base_url == CHUTES_BASE_URL  # no variable holds it: Chutes' default
    assert isinstance(s.api_key, dg.EnvVar) and s.api_key.env_var_name == "CHUTES_API_KEY"

    @dg.asset
    def probe(settings: DuelSettings, llm: LLMResource) -> dict:
        ep = llm.endpoint()
        return {"url": ep.base_url, "key_ok": ep.api_key == "cpk-secret-777", "mode": settings.mode(),
                "home": str(settings.paths().home)}

    with dg.instance_for_test() as inst:
        res = dg.materialize([probe], instance=inst, resources={"settings": s, "llm": LLMResource(settings=s)})
        assert res.output_for_node("probe") == {"url": CHUTES_BASE_URL, "key_ok": True, "mode": 1,
                                                "home": str(clean_env / "home")}
        run = inst.get_run_by_id(res.run_id)
        assert "cpk-secret-777" not in repr(run.run_config) and "cpk-secret-777" not in repr(run)


def test_settings_read_the_environment_once_and_bare_settings_not_at_all(clean_env, monkeypatch):
    from duel_assets.lib.settings import ConfigError

    monkeypatch.setenv("LLM_BASE_URL", "http://127.0.0.1:1/v1")
    monkeypatch.setenv("LLM_API_KEY", "k-bare")
    monkeypatch.setenv("DUEL_HOME", str(clean_env / "bare"))
    llm, s = LLMResource(), DuelSettings.from_environment()
    monkeypatch.setenv("DUEL_HOME", str(clean_env / "later"))
    monkeypatch.setenv("DUEL_MODE", "1")
    assert llm.endpoint().api_key == "k-bare"  # a secret stays an EnvVar, resolved when used
    assert s.paths().home == clean_env / "bare" and s.mode() == 2  # values were read once, when built
    bare = DuelSettings()  # built from nothing: the defaults, whatever the environment says
    assert bare.paths().home == clean_env / ".duel" and bare.mode() == 2
    assert bare.config().origin == "built-in defaults" and bare.token() is None and not bare.show_progress()
    with pytest.raises(ConfigError, match="no LLM endpoint configured"):
        bare.endpoint()
    assert LLMResource(base_url="http://other:2/v1").endpoint().base_url == "http://other:2/v1"


def test_a_bad_duel_mode_stops_the_resources(clean_env, monkeypatch):
    from duel_assets.lib.settings import ConfigError

    monkeypatch.setenv("DUEL_MODE", "3")
    with pytest.raises(ConfigError, match=r"DUEL_MODE: got '3'; allowed: 1 .* or 2"):
        build_resources()


def test_prompt_file_sensor_reads_the_folder_of_its_settings(clean_env, monkeypatch):
    from duel_assets.definitions import defs
    from duel_assets.defs.sensors import prompt_file_sensor

    monkeypatch.setenv("DUEL_HOME", str(clean_env / "not-this-one"))
    elsewhere = clean_env / "elsewhere"
    (elsewhere / "prompt").mkdir(parents=True)
    (elsewhere / "prompt" / "from_resource.json").write_text("[]")
    with dg.instance_for_test() as inst:
        ctx = dg.build_sensor_context(instance=inst, definitions=defs(),
                                      resources={"settings": DuelSettings(duel_home=str(elsewhere))})
        res = prompt_file_sensor(ctx)
    assert [r.partition_key for r in res.run_requests] == ["from_resource"]
