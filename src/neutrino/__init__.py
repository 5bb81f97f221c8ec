"""Neutrino: an NFV-grade network control plane speaking the OpenStack Networking API."""
