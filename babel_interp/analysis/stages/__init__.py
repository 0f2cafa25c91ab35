"""Stages of acquisition, the knowledge-transfer ratio and token efficiency."""
