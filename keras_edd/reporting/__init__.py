"""Reporting: the files an evaluation leaves behind.

  results_files  results.json, results.csv, report.md and TensorBoard, in one call
  figures        the rate bars, budget sweeps and detection ROC (PNG and PDF)
"""
