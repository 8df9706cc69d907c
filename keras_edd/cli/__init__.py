"""The command line of the binaries in bin/ (binary-side only: the library never
imports this package or reads FLAGS).

  flag_groups  the flags of the four binaries, the configs built from them, and the
               plumbing they share (flag errors, quiet TensorFlow start-up)
  presets      --preset=quick (--quick) and --preset=paper
"""
