"""dlb-tune: Ray Tune + Optuna hyperparameter sweeps for classic course models."""

__version__ = "0.1.0"
