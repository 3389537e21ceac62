"""The one partitions definition every duel asset shares: one partition per prompt file."""
import dagster as dg

prompt_files = dg.DynamicPartitionsDefinition(name="prompt_files")
