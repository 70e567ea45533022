"""Analysis: the run registry, scaling-law fits and effective parameters, sweeps, embedding geometry.

``analysis.sweep`` (which trains) is not imported here: ``from leviathan_explore.analysis.sweep import run_sweep``.
"""

from .registry import RegistryError, load_curves, load_for_fit, load_runs, training_flops
from .scaling import (BeyondFittedRange, BootstrapFit, PowerLaw, ScalingFitError, ScalingReport, analyze_runs,
                      bootstrap_power_law, effective_params, fit_power_law)
