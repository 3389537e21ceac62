"""The ``sampled_turns`` and ``pr_records`` stage: from the configured sources to a partition's
prompt file of turns, and the hidden PR record of each instance.

``sources`` (where rows come from), ``hub`` and ``blocks`` (reading only the blocks a sample needs),
``row_filter`` (the ``where`` filter), ``readers/`` (one module per scaffold family, with the
scaffold schemas, licences and provenance), ``trim`` and ``cutter`` (from a trajectory to turns),
``history_index`` (histories already held), ``sampler`` (the seeded sample of a partition),
``prompt_files`` and ``prompt_store`` (the partition's prompt file), ``pr_records`` (hidden records).
"""
