"""Stores of what must survive a restart (IStore): in memory, SQLite, and Redis (shared by cluster nodes)."""
