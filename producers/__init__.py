"""Producers that bring items into Tribunal: file ingest and topic replay."""
