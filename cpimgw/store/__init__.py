"""Stores of what must survive a restart (IStore): in memory and SQLite."""
