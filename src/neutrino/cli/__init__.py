"""The `neutrino` command."""
