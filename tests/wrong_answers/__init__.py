"""Corpora of wrong and right-but-unusual answers to every exercise (see README.md)."""
