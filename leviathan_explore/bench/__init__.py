"""Speed and memory of the generator, training steps and inference (``leviathan-explore bench``).

``timing``: interleaved, warmed-up timing and memory of candidates; ``suites``: the three
comparisons (the generator alone, training steps, inference) and their token ids;
``report``: the ratios, the printed report and the JSON file; ``runner``: a whole run
and the command. FLOP counts come from ``leviathan_explore.flops``.
"""

from ..flops import generator_flops_per_id, matmul_params, train_step_flops
from .report import format_report, summary_rows, write_json
from .runner import bench_command, hardware, run_benchmarks
from .suites import (GEN_VOCAB, GEN_WIDTHS, MATCH_TOLERANCE, ZIPF_EXPONENT, BenchPlan, bench_generator,
                     bench_inference, bench_training, fast_impls, make_plan, native_build_seconds, token_ids,
                     zipf_token_ids)
from .timing import (Candidate, cuda_peak_mb, first_calls, interleaved_medians, matmul_peak, measure_step,
                     saved_activation_mb, time_once)

__all__ = ["run_benchmarks", "bench_command", "format_report", "write_json", "summary_rows", "make_plan", "BenchPlan",
           "token_ids", "zipf_token_ids", "bench_generator", "bench_training", "bench_inference", "fast_impls",
           "native_build_seconds", "hardware", "interleaved_medians", "time_once", "Candidate", "first_calls",
           "measure_step", "saved_activation_mb", "cuda_peak_mb", "matmul_peak", "matmul_params",
           "train_step_flops", "generator_flops_per_id", "GEN_VOCAB", "GEN_WIDTHS", "ZIPF_EXPONENT",
           "MATCH_TOLERANCE"]
