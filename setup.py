from setuptools import find_packages, setup

# Dagster and its DuckDB integration are pinned together: dagster-duckdb-pandas 0.29.27 pins
# dagster==1.13.27 exactly and requires pandas<3 (a newer pandas makes pip quietly backtrack to
# dagster 1.12). The exact set the Makefile installs is in constraints.txt.
setup(
    name="duel_assets",
    version="0.1.0",
    description="Dagster assets that duel coding-agent turns (king vs challenger) under an LLM judge panel",
    packages=find_packages(exclude=["duel_assets_tests", "duel_assets_tests.*"]),
    package_data={"duel_assets": ["prompts/*.md", "data/*", "data/**/*"]},
    include_package_data=True,
    python_requires=">=3.10",
    install_requires=[
        "dagster==1.13.27",
        "dagster-duckdb==0.29.27",
        "dagster-duckdb-pandas==0.29.27",
        "pandas>=2.2,<3",
        "duckdb>=2.0,<3",
        "pyarrow>=15",
        "numpy>=1.26",
        "openai[aiohttp]>=3.54,<4",
        "datasets>=3.0",
        "tabulate>=0.9",
        "tqdm>=4.66",
    ],
    extras_require={
        "dev": ["dagster-webserver==1.13.27", "dagster-graphql==1.13.27", "pytest>=8"],
        # the browser test drives Debian's Chromium (installed by `make test-ui`), never a downloaded one
        "ui": ["playwright==1.65.2"],
    },
    entry_points={"console_scripts": ["duel-assets=duel_assets.cli:main"]},
)
