"""The review page over a DuckLake warehouse (catalog in a throw-away PostgreSQL, data files in a
folder), run by `make test-scale`: pages, filters and a label, the duel page of a 200-turn partition
timed server-side, and a writer committing a new partition while the page serves."""
from __future__ import annotations

import json
import re
import statistics
from urllib.parse import urlencode

from duel_assets.lib.settings import Paths
from duel_assets.lib.warehouse import DUCKLAKE, Warehouse
from duel_assets_tests.conftest import TEST_CHAIN
from duel_assets_tests.deployment import base_env
from duel_assets_tests.integration.test_review_server import BUDGET_MS, DISAGREE, _form, _turn_links
from duel_assets_tests.review_fixture import write_partition
from duel_assets_tests.review_server import ReviewServer, get


def test_review_reads_a_ducklake_while_a_writer_commits(postgres, tmp_path):
    lake_db = postgres.database("review_lake")
    home, cfg = tmp_path / "home", tmp_path / "chain.toml"
    cfg.write_text(TEST_CHAIN)
    env = base_env(DUEL_HOME=str(home), DUEL_CONFIG=str(cfg), DUEL_WAREHOUSE=f"ducklake:postgres:{lake_db.conninfo}",
                   DUEL_LAKE_DATA_PATH=str(tmp_path / "lake_data"))
    lake = Warehouse(env["DUEL_WAREHOUSE"], env["DUEL_LAKE_DATA_PATH"])
    assert lake.dialect == DUCKLAKE
    paths = Paths(home)
    write_partition(lake, paths, "plain", 20)
    write_partition(lake, paths, "big", 200, steps=15)
    labels = tmp_path / "labels.jsonl"
    with ReviewServer(env, "--labels", str(labels), "--reviewer", "lake", log=tmp_path / "review.log") as srv:
        assert "ducklake:" in srv.printed and "password" not in srv.printed
        status, _, page = get(srv.url + "/")
        assert status == 200 and 'href="/p/plain"' in page and 'href="/p/big"' in page
        _, _, page = get(srv.url + "/p/plain?filter=disagree")
        assert set(_turn_links(page, "plain")) == DISAGREE
        timings = []
        for i in range(0, 200, 20):
            status, headers, page = get(srv.url + f"/p/big/duel?t=t{i:03d}")
            assert status == 200 and page.count('class="judgement"') == 4
            timings.append(float(re.search(r"app;dur=([\d.]+)", headers["server-timing"]).group(1)))
        # every query asks the catalog in PostgreSQL: printed beside the local file's budget, bounded loosely
        print(f"\nDuckLake: duel page of a 200-turn partition, server-side ms over {len(timings)} turns: median "
              f"{statistics.median(timings):.1f}, max {max(timings):.1f} (a local file's budget: {BUDGET_MS:.0f})")
        assert statistics.median(timings) < 5 * BUDGET_MS
        # a writer commits while the page serves: no lock in the way, and the page sees it
        write_partition(lake, paths, "late", 5)
        _, _, page = get(srv.url + "/")
        assert 'href="/p/late"' in page
        _, _, page = get(srv.url + "/p/late/duel?t=t001")
        status, headers, _ = get(srv.url + "/p/late/label", data=urlencode({**_form(page), "label": "A"}).encode(),
                                 method="POST")
        assert status == 303 and "notice=labelled" in headers["location"]
    (rec,) = [json.loads(x) for x in labels.read_text().splitlines()]
    assert rec["id"] == "late/t001" and rec["reviewer"] == "lake"
    lake.close()
