"""Durable state of the server in one embedded SQLite database (aiosqlite).

``storage.db`` owns the connections and the versioned migrations; the other modules
hold one repository per table group and return dataclasses, never rows.
"""
