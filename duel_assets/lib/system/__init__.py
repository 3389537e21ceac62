"""Helpers over the operating system that every stage uses: atomic files (``files``), inter-process
locks (``locks``) and input read within bounds (``bounded``)."""
