"""The configs, installed as the package inference.conf (pyproject.toml), where Hydra finds them
as pkg://inference.conf; this file makes that folder a package Hydra can read."""
