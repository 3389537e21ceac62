"""Helpers over the operating system that every stage uses: atomic files (``files``), inter-process
locks (``locks``), input read within bounds (``bounded``) and processes (``processes``: who is
alive, children that end with their parent)."""
