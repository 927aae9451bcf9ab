"""Cluster tests: nodes on a real redis-server (in process), and ``twistd cpimgw`` nodes with real peers."""
