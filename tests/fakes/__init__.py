"""Test doubles that stand in for cloud APIs at their lowest layer (the transport)."""
