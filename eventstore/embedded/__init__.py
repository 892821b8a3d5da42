"""Embedded backends (SQLite, standard library only): event store, views, dead letters,
checkpoints, message bus."""
