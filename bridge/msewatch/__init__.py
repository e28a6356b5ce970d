"""msewatch: detect encrypted BitTorrent (MSE/PE) and related P2P traffic."""

__version__ = "0.1.0"
