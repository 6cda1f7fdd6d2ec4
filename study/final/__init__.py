"""Picks and the final evaluation of each arm's chosen configs on the test set."""
