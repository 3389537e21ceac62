"""The ``duel_calls`` stage (``king_answers``, ``challenger_answers``, ``judge_scores``): what each
role is asked, and the rows its replies become.

``stage`` (the partition's calls in one event loop), ``answers`` (king and challenger),
``judging`` (the judge panel), ``decided`` (when the judgements in so far fix the bucket),
``messages`` (the requests, rendered from ``duel_assets/templates/messages``), ``protocol`` (the
action formats), ``delimiters`` (untrusted text defused), ``leakage`` (the challenger's leak check),
``checks`` (the asset checks) and ``steps`` (what the step reports about each role's calls).
"""
