"""scf: Spoof-aware Captioning and Filtering (the I-FAS paper's Algorithm 1) and the FAS datasets' ingest.

Modules: ``scf.schema`` (the corpus contract: columns, label 1 = real, ``load_table``), ``scf.ingest`` (readers of
the twelve FAS datasets and of your own lists), ``scf.captioning`` (BLIP-2 captions, the spoof keyword filter,
the spoof-aware captioner, the VQA corpus), ``scf.sample`` (the embedded synthetic sample), ``scf.faces`` (face
detection and crops), ``scf.imaging`` (images of any mode to RGB: the one conversion of every tool). The command is ``scf``; the distribution is ``ifas-scf``.
"""
