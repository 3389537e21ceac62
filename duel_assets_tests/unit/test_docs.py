"""README.md and docs/: the chain.toml blocks load, every key and environment variable is documented,
every relative link (and its #heading) exists, and the README stays short with a table of contents."""
import ast
import re
import types
import typing
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from duel_assets.lib.settings import ChainConfig, PRRecordsConfig, PRRecordSpec, load_config

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [ROOT / "README.md", *DOCS]
CONFIGURATION = ROOT / "docs" / "configuration.md"

FENCE = re.compile(r"^(`{3,}|~{3,}).*?^\1[ \t]*$", flags=re.S | re.M)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
ENV_NAME = re.compile(r"(?:DUEL|DAGSTER|LLM|CHUTES|OPENAI|AWS|HF|HUGGINGFACE|XDG)_[A-Z0-9_]+|PGPASSWORD")


def rel(page: Path) -> str:
    return str(page.relative_to(ROOT))


def toml_blocks(page: Path) -> list[str]:
    return re.findall(r"^```toml\n(.*?)^```", page.read_text(encoding="utf-8"), flags=re.S | re.M)


def prose(page: Path) -> str:
    """The page without its fenced blocks and inline code (links there are examples, not links)."""
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    return re.sub(r"(`+)(?!`).*?\1", "", text)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[`*_]|!?\[([^\]]*)\]\([^)]*\)", lambda m: m.group(1) or "", heading.strip()).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in FENCE.sub("", page.read_text(encoding="utf-8")).splitlines():
        m = re.match(r"#{1,6}\s+(.*)", line)
        if m:
            s = slug(m.group(1))
            out.add(s if s not in seen else f"{s}-{seen[s]}")
            seen[s] = seen.get(s, 0) + 1
    return out


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_every_toml_block_loads_as_a_chain_toml(page, tmp_path):
    for i, block in enumerate(toml_blocks(page)):
        f = tmp_path / f"block{i}.toml"
        f.write_text(block, encoding="utf-8")
        load_config(f)  # a ConfigError names the block's key at fault


def test_the_readme_and_the_configuration_page_have_toml_blocks():
    assert toml_blocks(ROOT / "README.md"), "the README shows a minimal chain.toml"
    assert len(toml_blocks(CONFIGURATION)) >= 5


def _unwrap(annotation):
    """The type inside Annotated / Optional."""
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    return annotation


def model_keys(model: type[BaseModel], prefix: tuple = ()) -> set[tuple]:
    """Every key path a chain.toml can hold ("*" for a name of the user's choosing)."""
    if model is PRRecordsConfig:  # written as [[pr_records]] entries (or one [pr_records] table)
        model = PRRecordSpec
    out = set()
    for name, field in model.model_fields.items():
        ann, path = _unwrap(field.annotation), (*prefix, name)
        origin, args = typing.get_origin(ann), typing.get_args(ann)
        if origin is list and isinstance(_unwrap(args[0]), type) and issubclass(_unwrap(args[0]), BaseModel):
            out |= model_keys(_unwrap(args[0]), path)
        elif origin is dict and isinstance(_unwrap(args[1]), type) and issubclass(_unwrap(args[1]), BaseModel):
            out |= model_keys(_unwrap(args[1]), (*path, "*"))
        elif origin is dict and typing.get_origin(_unwrap(args[0])) is typing.Literal:
            out |= {(*path, k) for k in typing.get_args(_unwrap(args[0]))}
        elif isinstance(ann, type) and issubclass(ann, BaseModel):
            out |= model_keys(ann, path)
        else:
            out.add(path)
    return out


def documented_keys(value, prefix: tuple = ()) -> set[tuple]:
    out = {prefix} if prefix else set()
    if isinstance(value, dict):
        for k, v in value.items():
            out |= documented_keys(v, (*prefix, k))
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        for v in value:
            out |= documented_keys(v, prefix)
    return out


def test_the_configuration_page_shows_every_key_and_only_real_ones():
    import tomllib

    documented = set()
    for block in toml_blocks(CONFIGURATION):
        data = tomllib.loads(block)
        for alias, name in (("judge", "judges"), ("duel", "gate")):
            if alias in data:
                data[name] = data.pop(alias)
        documented |= documented_keys(data)
    keys = model_keys(ChainConfig)
    assert len(keys) > 60

    def shown(path: tuple) -> bool:
        return any(len(d) == len(path) and all(p in ("*", q) for p, q in zip(path, d)) for d in documented)

    missing = sorted(".".join(k) for k in keys if not shown(k))
    assert not missing, f"keys of chain.toml missing from docs/configuration.md: {missing}"


def environment_names() -> set[str]:
    """Variables the code reads: string constants that are a variable's name, and deploy/dagster.yaml's {env: ...}."""
    names = set()
    for f in (ROOT / "duel_assets").rglob("*.py"):
        tree = ast.parse(f.read_text(encoding="utf-8"))
        exported = {id(c) for node in ast.walk(tree) if isinstance(node, ast.Assign)  # __all__ lists Python names
                    and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets) for c in ast.walk(node.value)}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str) and ENV_NAME.fullmatch(node.value)
                    and id(node) not in exported):
                names.add(node.value)

    def env_refs(doc) -> set[str]:
        if isinstance(doc, dict):
            return ({doc["env"]} if set(doc) == {"env"} else set()).union(*(env_refs(v) for v in doc.values()))
        if isinstance(doc, list):
            return set().union(*(env_refs(v) for v in doc))
        return set()

    return names | env_refs(yaml.safe_load((ROOT / "deploy" / "dagster.yaml").read_text(encoding="utf-8")))


def test_the_configuration_page_names_every_environment_variable_the_code_reads():
    names = environment_names()
    assert {"DUEL_HOME", "DUEL_WAREHOUSE", "LLM_BASE_URL", "DAGSTER_PG_PASSWORD"} <= names  # the scan finds them
    text = CONFIGURATION.read_text(encoding="utf-8")
    missing = sorted(n for n in names if f"`{n}`" not in text)
    assert not missing, f"environment variables missing from docs/configuration.md's table: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_every_relative_link_points_at_a_file_and_heading_that_exist(page):
    links = LINK.findall(prose(page))
    bad = []
    for target in links:
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http://, https://, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.is_relative_to(ROOT) or not dest.exists():
            bad.append(f"{target}: no such file in the repository")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            bad.append(f"{target}: no heading #{anchor} in {rel(dest)}")
    assert not bad, f"{rel(page)}: {bad}"


def test_the_checker_sees_links_and_headings():
    readme = ROOT / "README.md"
    assert "docs/configuration.md" in LINK.findall(prose(readme))
    assert {"what-it-is", "a-minimal-chaintoml"} <= anchors(readme)
    assert slug("The call store: `duel-assets calls`") == "the-call-store-duel-assets-calls"
    assert slug("The gate's evidence") == "the-gates-evidence"


def test_every_docs_page_is_reachable_from_the_readme():
    linked = {(ROOT / t.partition("#")[0]).resolve() for t in LINK.findall(prose(ROOT / "README.md"))}
    assert not [rel(p) for p in DOCS if p.resolve() not in linked]


def test_the_readme_is_short_and_has_a_table_of_contents():
    readme = ROOT / "README.md"
    lines = readme.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 250
    opening = [line for line in lines[1:6] if line.strip()]  # the two set-up commands open it, after the title
    assert opening[0] == "```bash" and opening[1].startswith("make demo") and opening[2].startswith("make test")
    sections = [slug(m.group(1)) for line in lines if (m := re.match(r"## (.*)", line))]
    toc = set(LINK.findall(prose(readme)))
    assert sections and all(f"#{s}" in toc for s in sections), sections


REPO_PATH = re.compile(r"(?<![\w/.~$])((?:duel_assets(?:_tests)?|deploy|examples|docs)/[\w./-]*[\w/])")


def repo_paths(page: Path) -> set[str]:
    """Paths inside the repository the page names (in prose or code): ``duel_assets/...`` and the like."""
    return {m.rstrip("/.") for m in REPO_PATH.findall(page.read_text(encoding="utf-8"))}


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_every_repository_path_named_exists(page):
    bad = sorted(p for p in repo_paths(page) if "<" not in p and "*" not in p and not (ROOT / p).exists())
    assert not bad, f"{rel(page)} names paths that do not exist: {bad}"


def test_the_path_checker_sees_paths():
    assert "duel_assets/data/demo_chain.toml" in repo_paths(ROOT / "docs" / "configuration.md")
    assert "duel_assets/duckdb_extensions" not in repo_paths(ROOT / "docs" / "configuration.md")  # under ~/.cache


def test_every_make_target_named_exists():
    targets = set(re.findall(r"^([a-z][\w-]*):", (ROOT / "Makefile").read_text(encoding="utf-8"), flags=re.M))
    named = {t for page in PAGES for t in re.findall(r"`make ([a-z][\w-]*)", page.read_text(encoding="utf-8"))}
    assert {"demo", "test"} <= named
    assert not sorted(named - targets), f"make targets named in the docs but not in the Makefile: {sorted(named - targets)}"


def test_the_readme_lists_every_make_target():
    phony = re.search(r"^\.PHONY:(.*)$", (ROOT / "Makefile").read_text(encoding="utf-8"), flags=re.M)
    assert phony
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index("| `make ...` |"):]
    table = table[:table.index("\n\n")]
    missing = [t for t in phony.group(1).split() if f"`{t}`" not in table]
    assert not missing, f"make targets missing from the README's table: {missing}"
