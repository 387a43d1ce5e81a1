"""``python -m bcos.explain_corpus``: the command of :mod:`bcos.cli.explain_corpus` (the library is
:mod:`bcos.analysis.corpus`)."""
