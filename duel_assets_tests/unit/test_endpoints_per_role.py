"""Endpoints per role: ``[endpoints.<name>]`` tables and ``[roles]`` checked one line per problem,
the routes they give and the variables an endpoint names."""
import pytest

from duel_assets.lib.settings import ConfigError, endpoints, parse_config


def test_endpoint_tables_and_roles_are_checked_with_one_line_each():
    with pytest.raises(ConfigError) as e:
        parse_config({"endpoints": {"a": {}, "b": {"base_url": "http://x/v1", "base_url_env": "B_URL"},
                                    "bad name": {"base_url": "http://x/v1", "headers": {"Authorization": "k"}}},
                      "roles": {"king": "nowhere", "judges": {"not-a-judge": "a"}}})
    lines = e.value.errors
    assert any(ln.startswith("endpoints.a: got neither") for ln in lines)
    assert any(ln.startswith("endpoints.b: got both") for ln in lines)
    assert any("bad name" in ln and "allowed: letters" in ln for ln in lines)
    assert any("headers.Authorization" in ln for ln in lines)
    assert any(ln.startswith("roles.king: got 'nowhere'") for ln in lines)
    assert any(ln.startswith("roles.judges.not-a-judge:") for ln in lines)


def test_routes_and_the_variables_an_endpoint_names():
    cfg = parse_config({"judges": {"models": ["j1", "j2"]},
                        "endpoints": {"far": {"base_url_env": "FAR_URL", "api_key_env": "FAR_KEY", "concurrency": 3}},
                        "roles": {"judges": {"j2": "far"}}})
    assert endpoints.role_routes(cfg) == {"king": "default", "challenger": "default", "judge j1": "default", "judge j2": "far"}
    assert endpoints.used(cfg, judges_only=True) == ["default", "far"]
    assert endpoints.limits(cfg, "far").concurrency == 3 and endpoints.limits(cfg, "default") is cfg.calls
    ep = endpoints.spec_endpoint("far", cfg.endpoints["far"], {"FAR_URL": "http://u:pw@far:81/v1/", "FAR_KEY": "sk-far-key"})
    assert (ep.base_url, ep.api_key, ep.basic_auth) == ("http://far:81/v1", "sk-far-key", ("u", "pw"))
    with pytest.raises(ConfigError, match=r"endpoints\.far\.base_url_env: the variable FAR_URL is unset"):
        endpoints.spec_endpoint("far", cfg.endpoints["far"], {})
    assert not endpoints.is_routed(parse_config({}))
