"""Redis Cluster's view of Amber: hash slots and the slot map (issue #14)."""
