"""Reporting: the files an evaluation leaves behind.

  results_files  results.json, results.csv, TensorBoard and report.md, in one call
  markdown       report.md's text: the tables, warnings, detection, timings
  figures        the rate bars, budget sweeps and detection ROC (PNG and PDF)
  tensorboard    logs/evaluation/ (numbers grouped by target, sweeps as curves over
                 their budget, image grids, detection) and a training run's hparams
  readme_tables  the README's result tables (tools/readme_tables.py is the command line)

Every renderer reads the typed results of keras_edd.results_schema.
"""
