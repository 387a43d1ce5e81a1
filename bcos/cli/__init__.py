"""The command lines, on top of every other layer of the library (nothing in ``bcos`` imports them):

- ``python -m bcos.explain`` (:mod:`.explain`): token heatmaps of texts;
- ``python -m bcos.evaluate`` (:mod:`.evaluate`): faithfulness and plausibility of every method on a split;
- ``python -m bcos.evaluate.lm`` (:mod:`.evaluate_lm`): decoders on minimal pairs;
- ``python -m bcos.explain_corpus`` (:mod:`.explain_corpus`): a whole split explained to shard files;
- ``python -m bcos.analysis`` (:mod:`.analyze`): word statistics, community bias and the report of such a corpus.
"""
