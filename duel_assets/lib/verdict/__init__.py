"""The ``duel_verdict`` stage: judge replies parsed (``replies``), each turn's duel score
(``scores``) and bucket (``buckets``), the partition's gate (``gate``), the verdict rows, per-judge
statistics and who answered (``verdicts``), and what the accepted turns cost (``spend``).
"""
