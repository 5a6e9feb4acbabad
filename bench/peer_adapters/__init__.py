"""trine's adapters for the peer harness in ../shared/bench/peers (see bench/peers.py)."""
