"""Helpers for the tests: real servers they need."""
