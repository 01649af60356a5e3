"""The same simple journey job written for other frameworks: the peers `bench/peers.py` runs."""
