"""Tier (b) of the test world: NSD serving the world's signed zones behind a validating unbound.

``world_b.start_tier_b`` / ``running_tier_b`` start it; ``zonefiles``, ``signing``,
``nsd`` and ``unbound`` are the pure parts that write its files.
"""
