"""Set models; each family in one file (dmms.py, ...)."""
