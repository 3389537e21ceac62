from setuptools import find_packages, setup

# Dagster and its DuckDB integration are pinned together: dagster-duckdb-pandas 0.29.27 pins
# dagster==1.13.27 exactly and requires pandas<3 (a newer pandas makes pip quietly backtrack to
# dagster 1.12). The exact set the Makefile installs is in constraints.txt.
#
# DuckDB is pinned to 1.5.5 because the DuckLake warehouse (DUEL_WAREHOUSE=ducklake:...) needs
# the ducklake, postgres and httpfs extensions, and DuckDB downloads extensions at run time from
# its own host, which a locked-down worker cannot reach. The pip wheels duckdb-extension-* carry
# those extension files and exist for exactly duckdb 1.5.5 (none for 2.x);
# duel_assets/lib/warehouse/extensions.py installs them from the wheels into a private directory
# and never downloads. dagster-duckdb 0.29.27 accepts 1.5.5. A database file written by DuckDB 2.x
# cannot be opened by 1.5.5 (see docs/operations.md, "Moving an existing warehouse").
DUCKDB = "1.5.5"
setup(
    name="duel_assets",
    version="0.1.0",
    description="Dagster assets that duel coding-agent turns (king vs challenger) under an LLM judge panel",
    packages=find_packages(exclude=["duel_assets_tests", "duel_assets_tests.*"]),
    # the LLM message templates; the review page's templates, stylesheet and script
    package_data={"duel_assets": ["templates/messages/*.md", "data/*", "data/**/*", "templates/review/*.html", "static/review/*"]},
    include_package_data=True,
    python_requires=">=3.11",  # tomllib
    install_requires=[
        "dagster==1.13.27",
        "dagster-duckdb==0.29.27",
        "dagster-duckdb-pandas==0.29.27",
        "pandas>=2.2,<3",
        f"duckdb=={DUCKDB}",
        f"duckdb-extension-ducklake=={DUCKDB}",
        f"duckdb-extension-postgres=={DUCKDB}",
        f"duckdb-extension-httpfs=={DUCKDB}",
        # Dagster's run, event and schedule storage in PostgreSQL (deploy/dagster.yaml); brings psycopg2
        "dagster-postgres==0.29.27",
        "pyarrow>=15",
        "numpy>=1.26",
        # the LLM calls: the openai SDK on its aiohttp transport (lib/calls/transport.py); aiohttp's
        # and httpx2's exceptions are read to tell a timeout from a broken connection
        "openai[aiohttp]>=3.54,<4",
        "aiohttp>=3.14.4,<4",
        "datasets>=3.0",
        # MinHash / LSH for near-duplicate turns and benchmark problem statements (lib/sampling/curation/)
        "datasketch>=2.0,<3",
        "scipy>=1.10",  # near-duplicate clusters: connected components (datasketch needs it too)
        "tabulate>=0.9",
        "tqdm>=4.66",
        # `duel-assets ui` and a deployment's webserver
        "dagster-webserver==1.13.27",
        "dagster-graphql==1.13.27",
    ],
    extras_require={
        "dev": [
            "pytest>=8",
            # a per-test time limit (pyproject.toml), so that a hung test fails instead of holding the suite
            "pytest-timeout==2.4.0",
            # `make lint`
            "ruff==0.17.6",
            "mypy==2.4.1",
        ],
        # the browser test drives Debian's Chromium (installed by `make test-ui`), never a downloaded one
        "ui": ["playwright==1.65.2"],
    },
    entry_points={"console_scripts": ["duel-assets=duel_assets.cli:main"]},
)
