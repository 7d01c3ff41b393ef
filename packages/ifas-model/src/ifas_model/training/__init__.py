"""Training code of I-FAS (the Lopsided-LM trainer). Evaluation code never imports it."""
