"""The ``sidemesh`` command.

Owns: parsing flags and ``SIDEMESH_*`` variables, logging setup, exit statuses
(2 for bad input), and printing for people (tables) or scripts (``--output json``).
Must not: hold mesh logic; it calls the rooms that do.
"""
