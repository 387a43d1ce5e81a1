"""``python -m bcos.evaluate.lm``: see :mod:`bcos.cli.evaluate_lm`."""
from bcos.cli.evaluate_lm import main

main()
