"""What the pipeline writes besides the warehouse.

* ``paths``: every file of one partition, derived from its exact key;
* ``summary``: the partition summary and turn detail (``duel_verdict`` writes them) and the export
  manifest (``exported_buckets`` writes it);
* ``documents``: the per-turn export files under ``final/``, ``refined/``, ``defeat/``;
* ``layouts`` and ``sft``: training rows in the ``openai`` or ``source`` layout, one shard pair per
  partition;
* ``report`` and ``card``: report.md and the dataset card over all partitions (``duel_report``).
"""
