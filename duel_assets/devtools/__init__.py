"""Tools for developing and measuring the pipeline, shipped with it: the offline stand-in server
(``duel-assets standin``) and a client of the Dagster webserver's GraphQL API (the benchmarks and
the UI tests)."""
