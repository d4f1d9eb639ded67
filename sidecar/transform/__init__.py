"""The coalescer: per-stream state, delta merging and stream lifecycle (PROTOCOL §2.2, §4-6).

`table.StreamTable` is the entry point; it is synchronous and holds no tasks.
"""
