from duel_assets.lib.duel.leakage import leak_evidence, patch_identifiers

PATCH = ("diff --git a/widgets/tokenize.py b/widgets/tokenize.py\n--- a/widgets/tokenize.py\n+++ b/widgets/tokenize.py\n"
         "@@ -1,2 +1,2 @@\n-    return split_tokens(text)\n+    return split_tokens_keep_trailing(text)\n")
HISTORY = "Observation: ./widgets/parser.py\n./README.md\n"


def test_file_only_in_patch_is_flagged_with_it_as_evidence():
    ev = leak_evidence("THOUGHT: read it.\n```bash\ncat -n widgets/tokenize.py\n```", HISTORY, PATCH)
    assert ev == ["widgets/tokenize.py"]


def test_file_seen_in_history_is_not_flagged():
    assert leak_evidence("```bash\ncat -n widgets/parser.py\n```", HISTORY, PATCH) == []
    seen = HISTORY + "./widgets/tokenize.py\n"
    assert leak_evidence("```bash\ncat -n widgets/tokenize.py\n```", seen, PATCH) == []


def test_identifier_introduced_by_the_patch_is_flagged():
    ev = leak_evidence("```bash\ngrep -rn split_tokens_keep_trailing .\n```", HISTORY, PATCH)
    assert ev == ["split_tokens_keep_trailing"]
    assert "split_tokens" in patch_identifiers(PATCH)
    assert leak_evidence("```bash\ngrep -rn split_tokens .\n```", HISTORY + "split_tokens(", PATCH) == []


def test_no_patch_no_suspicion():
    assert leak_evidence("cat widgets/tokenize.py", HISTORY, None) == []
