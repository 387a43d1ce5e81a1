"""``python -m bcos.explain_corpus``: see :mod:`bcos.cli.explain_corpus`."""
from bcos.cli.explain_corpus import main

if __name__ == "__main__":  # spawned workers import this module again
    main()
