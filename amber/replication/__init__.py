"""Replication: the store kept in step across nodes through Raft (PySyncObj as the engine)."""
