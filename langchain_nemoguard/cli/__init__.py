"""The ``nemoguard`` command line."""
