"""Runs: one run directory per training or evaluation, and the runs of the binaries.

  run_dirs        run directories: flags.json, results.json, models, the atomic writer
  run_config      what bin/train, bin/eval_whitebox, bin/eval_blackbox and bin/reproduce
                  turn their flags into
  train_run       one training run: data -> teacher -> labels -> distilled model
  eval_run        one evaluation run (bin/eval_whitebox, bin/eval_blackbox)
  substitute_run  surrogate J inside an evaluation run: trained or reloaded
  reproduce       the whole pipeline (bin/reproduce), the only place that trains and
                  evaluates
"""
