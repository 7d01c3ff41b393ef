"""Spoof-aware Captioning and Filtering (SCF, the paper's Algorithm 1): captioners, keyword filter, C_S, corpus.

Modules: `keywords` (the dictionary K and the filter), `captioner` (BLIP-2 C_G / C_S), `finetune` (C_G -> C_S),
`corpus` (VQA rows and the dataset card), `pipeline` (the resumable stages behind ``scf caption``).
Import the submodules directly; this package imports nothing heavy.
"""
