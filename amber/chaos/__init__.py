"""Chaos testing: the history model and the checkers that judge a run's history."""
