"""Tribunal's shared runtime: settings, Kafka plumbing, logging, metrics and the CLI."""

__version__ = "0.1.0"
