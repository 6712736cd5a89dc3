"""The ``hashpa`` command line, installed as ``hashpa.cli``: thin shells over library functions."""
