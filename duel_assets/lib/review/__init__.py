"""The review page's logic: what it reads from the warehouse, the turn filters and the review queue,
the coloured diff, leak-evidence highlighting, and the labelled-duel records it appends. No web
framework: ``duel_assets.review_app`` serves it.

Modules: ``running`` (where a running page is reached), ``reading`` (the warehouse reads),
``turns`` (per-turn figures, filters, sorting, the queue), ``partitions`` (the partitions page),
``duel`` (one duel, shaped for its page), ``text`` (diff lines, highlighting, folding), ``labels``
(label records and the append-only labels file).
"""
