"""What decides which turns may enter a dataset beyond the source filters.

* ``diffs``: unified diffs as files and hunk line ranges, and when two patches overlap;
* ``shingles``: text normalised for near-duplicate detection, its shingles and their MinHash;
* ``benchmarks``: benchmark instance lists (SWE-bench, SWE-rebench, ...) read like sources;
* ``decontaminate``: which benchmark instance a trajectory or a turn matches, and how;
* ``near_dup``: near-duplicate turns kept once per cluster, caps per instance and repository;
* ``near_dup_index``: the turns other prompt files of a ``DUEL_HOME`` hold, for both;
* ``records``: what a prompt file, a partition and the report say about all of it;
* ``trajectory_store``: whole source trajectories kept at sampling time for trajectory rows.
"""
