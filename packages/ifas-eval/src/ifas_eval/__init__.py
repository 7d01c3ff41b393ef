"""ifas_eval: cross-domain FAS protocols, metrics under explicit conventions, scoring, reports, prediction.

Entry points for Python (each module imports its heavy libraries lazily):

- ``ifas_eval.predict.judge(model, processor, path_or_image)``: a judgment with its explanation for one photo
  or video (face crop, P(real), the model's answer), the record ``ifas-predict`` prints.
- ``ifas_eval.scoring.load_checkpoint(path)``: ``(model, processor)`` of an I-FAS checkpoint (safetensors only).
- ``ifas_eval.metrics`` and ``ifas_model.metrics.flip_metrics``: HTER, AUC, TPR@FPR, ISO/IEC 30107-3 figures
  of your own score arrays (conventions in docs/metrics.md).
- ``ifas_eval.protocols.load_protocol(name_or_yaml)`` and ``ifas_eval.runner.evaluate_protocol``: the
  protocols ``ifas-eval`` runs (MCIO, One to Eleven, your own YAML).
"""
