"""The one partitions definition every duel asset shares: one partition per prompt file."""
import dagster as dg

PROMPT_FILES = "prompt_files"  # the partitions definition's name, as the instance stores it
prompt_files = dg.DynamicPartitionsDefinition(name=PROMPT_FILES)
