"""Run the robustness suite and the dashboard load benchmark; write docs/robustness.md.

    python scripts/robustness_report.py                 # everything (about 15-30 min on 2 cores)
    python scripts/robustness_report.py --sessions 1 2  # a smaller load benchmark
    python scripts/robustness_report.py --skip-load     # the tests only

Runs ``pytest`` on tests/test_robustness_props.py, tests/test_faults.py and
tests/test_app_safety.py with a JUnit XML report (Hypothesis statistics included),
then ``benchmarks/load_dashboard.py``. Every number in docs/robustness.md comes from
those two outputs, which are kept in results/robustness/ (summary.json, the load
benchmark's JSON) and test-artifacts/robustness-junit.xml. Exits 1 when anything failed.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TEST_FILES = ["tests/test_robustness_props.py", "tests/test_faults.py", "tests/test_app_safety.py"]
JUNIT = REPO / "test-artifacts" / "robustness-junit.xml"
RESULTS = REPO / "results" / "robustness"
LOAD_JSON = RESULTS / "load_dashboard.json"
SUMMARY_JSON = RESULTS / "summary.json"
DOC = REPO / "docs" / "robustness.md"


@dataclass
class Row:
    """One line of the table: what was tried, by which tests, and where to look when it fails."""

    title: str
    tests: tuple[str, ...]  # test function names (parametrized variants are counted separately)
    next_step: str          # what to do when a case fails
    cases: int = 0
    survived: int = 0
    items: int = 0
    failures: list[str] = field(default_factory=list)


ROWS = [
    Row("Model configurations: valid ones build, train a step (finite loss and gradients) and count "
        "analytic = real parameters",
        ("test_valid_model_configs_build_train_and_count_exactly",),
        "fix the counting in params.py or the validation in config.py for the failing configuration"),
    Row("Any value of any model / generator setting, random config dicts, non-dicts: accepted, or "
        "`ConfigError` naming the field",
        ("test_any_model_setting_is_accepted_or_named", "test_any_generator_setting_is_accepted_or_named",
         "test_random_config_dicts_load_or_raise_config_error", "test_from_dict_of_a_non_dict_is_a_config_error"),
        "validate the field in config.py (ModelConfig.validate / from_dict)"),
    Row("Generator configurations and constructor sizes: valid ones embed any ids (training and cached-table "
        "paths agree); bad sizes raise `ConfigError`",
        ("test_valid_generators_embed_any_ids_and_count_exactly",
         "test_generator_constructor_rejects_bad_sizes_by_name", "test_generator_refuses_a_settings_dict"),
        "validate in LeviathanGenerator.__init__ (generator.py)"),
    Row("Token-id tensors: every integer dtype, out-of-range, negative, float/bool/complex, empty, any shape, "
        "non-tensors; inputs and targets",
        ("test_model_takes_valid_ids_of_any_int_dtype_and_rejects_the_rest",
         "test_loss_targets_are_checked_like_inputs", "test_non_integer_ids_raise_token_id_error",
         "test_generator_takes_ids_of_any_shape", "test_ids_that_are_not_a_2d_tensor_are_refused_by_name"),
        "check the ids at the boundary (generator.check_token_ids, model.TransformerLM.embed/forward)"),
    Row("Random bytes and text through the three tokenizers (round trip; special-token text stays text)",
        ("test_any_bytes_decoded_as_text_round_trip_through_every_tokenizer",
         "test_special_token_text_is_ordinary_text"),
        "fix data/tokenizers.py for the failing text"),
    Row("Random files (arbitrary bytes) through the shard writer: shards load, verify and decode back, or a "
        "one-line refusal",
        ("test_random_files_through_the_shard_writer_load_back_or_are_refused",),
        "fix data/shards.py or data/corpora.py for the failing files"),
    Row("Random command lines for every subcommand, in-process: exit 0, or exit 2 with one error line, "
        "never a traceback",
        ("test_random_command_lines_exit_0_or_2_with_one_line",
         "test_random_command_lines_of_working_commands_exit_0_or_2", "test_random_top_level_command_lines",
         "test_help_of_every_subcommand_exits_0"),
        "catch the error at the subcommand's boundary in cli.py (or its library entry point)"),
    Row("Command lines in a real process (bad numbers, paths in /proc, newlines in values)",
        ("test_command_lines_in_a_real_process_print_no_traceback",),
        "catch the error at the subcommand's boundary in cli.py"),
    Row("SIGKILL of `leviathan-explore train` at a fault point (optimizer step, half-written checkpoint, "
        "checkpoint before rename, evaluation, torn metrics line, old checkpoint half deleted); resume ends "
        "bit-for-bit as the "
        "uninterrupted run, no temporary file left",
        ("test_sigkill_at_a_fault_point_resumes_from_the_last_complete_checkpoint",),
        "training/checkpoint.py (atomic write, stale temporaries) or trainer.py (resume state)"),
    Row("SIGKILL at random moments, 3 kills per run, then resume",
        ("test_repeated_sigkill_at_random_moments_then_resume_equals_the_uninterrupted_run",),
        "reproduce with the logged kill points; training/trainer.py resume path"),
    Row("Damaged checkpoints: truncated, bit-flipped or deleted file (4 files), single-bit flips all over "
        "the manifest, all checkpoints damaged",
        ("test_a_damaged_latest_checkpoint_is_named_and_the_previous_one_is_used",
         "test_every_bit_flip_in_a_manifest_is_detected_or_harmless",
         "test_when_every_checkpoint_is_damaged_resume_fails_with_one_line_naming_them"),
        "training/checkpoint.py verify_checkpoint / find_latest_checkpoint"),
    Row("Disk full (ENOSPC) during a checkpoint, the summary, and a shard build (tokens, manifest, "
        "compaction): the previous state is intact",
        ("test_disk_full_during_a_checkpoint_keeps_the_previous_ones",
         "test_disk_full_while_writing_the_summary_keeps_the_old_one",
         "test_disk_full_during_a_shard_build_keeps_the_previous_data"),
        "write to a temporary file and os.replace in the failing writer"),
    Row("`data build` killed at a random moment, then rerun: byte-identical shards, no temporary folder left",
        ("test_an_interrupted_data_build_can_be_rerun_and_gives_identical_shards",),
        "data/shards.py build_corpus (temporary folder, stale-build cleanup)"),
    Row("The served app listens on 127.0.0.1 by default",
        ("test_serve_binds_loopback_unless_told_otherwise", "test_the_served_app_listens_on_loopback_only"),
        "dashboard/app.py serve and the serve subcommand's --address default"),
    Row("Run names and sources typed into the page: `..`, absolute paths, symbolic links (random names too) "
        "stay inside the runs directory; no reader follows a link out",
        ("test_run_names_that_could_escape_are_refused", "test_run_names_through_symbolic_links_are_refused",
         "test_any_run_name_resolves_inside_the_runs_directory_or_is_refused",
         "test_the_train_tab_refuses_an_escaping_run_name_and_writes_nothing",
         "test_embedding_sources_cannot_name_a_path_outside_the_runs_directory",
         "test_no_reader_follows_a_symbolic_link_out_of_the_runs_directory"),
        "dashboard/common.py safe_run_dir / list_runs"),
    Row("Nothing is unpickled: no unpickling call in the package; planted pickles (.pt, .pkl, a pickle posing "
        "as .safetensors) never run",
        ("test_the_package_has_no_unpickling_call", "test_planted_pickles_in_a_run_are_never_unpickled"),
        "replace the call with safetensors / JSON / np.load(allow_pickle=False)"),
    Row("A failing training job shows its error in its own page; other sessions and the server carry on "
        "(in-process and in a served browser page)",
        ("test_a_failing_job_shows_in_its_own_page_and_another_session_trains_on",
         "test_a_worker_failure_in_the_served_app_stays_in_that_page"),
        "dashboard/train.py TrainingJob._run / TrainTab.poll"),
    Row("Nothing is fetched from outside the machine while a page trains and switches tabs",
        ("test_a_page_that_trained_and_switched_tabs_fetches_nothing_from_outside",),
        "dashboard/app.py keep_panel_css_local: find the model whose stylesheet still names the CDN"),
    Row("Load benchmark, small (N = 1, 2 browser sessions) as a test",
        ("test_load_benchmark_with_one_and_two_sessions",),
        "see the load table below and benchmarks/load_dashboard.py's JSON"),
]


# ---- running --------------------------------------------------------------------------------

def run_pytest(extra: list[str]) -> tuple[int, float, str]:
    JUNIT.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pytest", *TEST_FILES, f"--junitxml={JUNIT}", "-o", "junit_family=xunit2",
           "--hypothesis-show-statistics", "-p", "no:cacheprovider", "-q", "-rfEX", *extra]
    print("$", " ".join(cmd[2:]), flush=True)
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO)
    return proc.returncode, time.monotonic() - start, " ".join(["python", *cmd[1:]])


def run_load(sessions: list[int], steps: int) -> tuple[int, float]:
    cmd = [sys.executable, str(REPO / "benchmarks" / "load_dashboard.py"), "--sessions", *map(str, sessions),
           "--steps", str(steps), "--json", str(LOAD_JSON)]
    print("$", " ".join(["python", *cmd[1:]]), flush=True)
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO)
    return proc.returncode, time.monotonic() - start


# ---- reading the JUnit report -------------------------------------------------------------------

def _examples(statistics: str) -> int | None:
    """Test cases Hypothesis ran for one test (passing + failing, all phases)."""
    found = re.findall(r"(\d+) passing, (\d+) failing", statistics)
    return sum(int(a) + int(b) for a, b in found) if found else None


def read_junit(path: Path) -> list[dict]:
    """One dict per test item: function, id, outcome, seconds, cases, message."""
    root = ET.parse(path).getroot()
    stats: dict[str, str] = {}
    for prop in root.iter("property"):
        name = prop.get("name", "")
        if name.startswith("hypothesis-statistics-"):
            stats[name[len("hypothesis-statistics-"):]] = base64.b64decode(prop.get("value", "")).decode()
    items = []
    for case in root.iter("testcase"):
        test_id = case.get("name", "")
        module = case.get("classname", "").replace(".", "/") + ".py"
        outcome, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error"):
                outcome, message = "failed", (child.get("message") or child.text or "")
            elif child.tag == "skipped":
                kind = child.get("type", "")
                outcome = "xfailed" if "xfail" in kind else "skipped"
                message = child.get("message") or ""
        hypothesis = stats.get(f"{module}::{test_id}")
        cases = _examples(hypothesis) if hypothesis else None
        items.append({"function": test_id.split("[")[0], "id": f"{module}::{test_id}", "outcome": outcome,
                      "seconds": float(case.get("time") or 0), "cases": cases if cases is not None else 1,
                      "hypothesis": hypothesis is not None, "message": _one_line(message)})
    return items


def _one_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    failing = next((ln for ln in lines if ln.startswith("Falsifying example") or "Failing test case" in ln), None)
    first = lines[0] if lines else ""
    return (first + (f" ({failing})" if failing and failing != first else ""))[:300]


def fill_rows(items: list[dict]) -> list[str]:
    """Attach every item to its row; the names of items no row claims."""
    by_function = {t: row for row in ROWS for t in row.tests}
    unclaimed = []
    for item in items:
        row = by_function.get(item["function"])
        if row is None:
            unclaimed.append(item["id"])
            continue
        row.items += 1
        if item["outcome"] == "skipped":
            row.failures.append(f"`{item['id'].split('::')[1]}` skipped: {item['message']}")
            continue
        row.cases += item["cases"]
        if item["outcome"] == "passed":
            row.survived += item["cases"]
        else:
            failed = 1 if item["hypothesis"] else item["cases"]  # Hypothesis stops at the first failing case
            row.survived += item["cases"] - failed
            row.failures.append(f"`{item['id'].split('::')[1]}` {item['outcome']}: {item['message']}")
    return unclaimed


# ---- writing --------------------------------------------------------------------------------------

def _fmt(x, unit: str = "", digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}{unit}"


def _js_errors(session: dict) -> list[str]:
    """A session's page errors that are not about network requests."""
    return [e for e in session.get("page_errors", [])
            if not e.startswith(("external request", "request failed")) and "ERR_NAME_NOT_RESOLVED" not in e]


def load_section(load: dict | None, code: int | None) -> list[str]:
    if load is None:
        return ["## Dashboard under load", "", "Not run this time (`--skip-load`).", ""]
    lines = ["## Dashboard under load", "",
             f"`{load['command']}` (exit {code}; {load['machine']['cpu_count']} CPUs, load average "
             f"{load['machine']['load_average_at_start'][0]:.1f} at the start; {load['wall_s']:.0f} s). Each session "
             f"loads the page, starts a dense + Leviathan pair of {load['levels'][0]['steps_per_model'] if load['levels'] else '?'} "
             "steps each on the Train tab, moves the width slider while it trains, and reads its own curve.", "",
             "| sessions | first page p50 / max (s) | slider p50 / p95 (ms) | jobs finished | live curve complete "
             "| server RSS peak / end (MB) | saw another's data | server up | wall (s) |",
             "|---:|---:|---:|---:|---:|---:|:---:|:---:|---:|"]
    for lv in load["levels"]:
        f, s, m = lv["first_page_s"], lv["slider_ms"], lv["server_rss_mb"]
        lines.append(f"| {lv['sessions']} | {_fmt(f['p50'])} / {_fmt(f['max'])} | {_fmt(s['p50'], digits=0)} / "
                     f"{_fmt(s['p95'], digits=0)} ({s['count']} moves) | {lv['jobs_finished']}/{lv['sessions']} | "
                     f"{lv.get('live_curves_complete', '-')}/{lv['sessions']} | "
                     f"{m['peak']:.0f} / {m['end']:.0f} | {'**yes**' if lv['cross_session_data'] else 'no'} | "
                     f"{'yes' if lv['server_up'] else '**no**'} | {lv['wall_s']:.0f} |")
    d = load.get("disconnect")
    lines.append("")
    if d:
        lines.append(f"A session that closed its page during a long job: the job stopped "
                     f"{_fmt(d['stop_after_close_s'], ' s', 1)} after the close (summary written, "
                     f"`stopped_early` = {d['stopped_early']}, at step {d['steps_done']}; second model started: "
                     f"{d['second_model_started']}; server threads {d['server_threads_while_training']} while "
                     f"training, {d['server_threads_after']} after). Server up at the end: "
                     f"{load.get('server_up_at_end')}; exit code after Ctrl-C: {load.get('server_exit_code')}; "
                     f"unexpected tracebacks in its log: {len(load.get('server_tracebacks', []))}.")
    external = sorted({u for lv in load["levels"] for u in lv.get("external_requests", [])})
    problems = sorted({p.split(": ", 1)[-1] for lv in load["levels"] for p in lv.get("problems", [])
                       if "external request" not in p and "ERR_NAME_NOT_RESOLVED" not in p
                       and "request failed" not in p})
    if external:
        lines += ["", f"**Not yet:** the pages requested {len(external)} resource(s) from outside this machine "
                      f"(the app promises to serve everything itself): " + ", ".join(f"`{u}`" for u in external)
                  + ". Next step: find which model still carries a CDN stylesheet URL (dashboard/app.py "
                    "`keep_panel_css_local` rewrites Panel's fallback; log `panel.io.resources.patch_stylesheet`)."]
    stuck = [(lv["sessions"], s) for lv in load["levels"] for s in lv.get("per_session", [])
             if s.get("finished") and not (s.get("curve_complete") and s.get("page_showed_end"))]
    if stuck:
        cases = "; ".join(f"N={n} session {s['session']}: job finished, page drew {s.get('train_points', 0)} of "
                          f"{2 * load['levels'][0]['steps_per_model']} train points and "
                          f"{'did' if s.get('page_showed_end') else 'never'} showed the end"
                          + (f" (`{s['screenshot']}`)" if s.get("screenshot") else "")
                          + "".join(f", page error `{e[:100]}`" for e in _js_errors(s)[:1]) for n, s in stuck[:6])
        lines += ["", f"**Not yet:** {len(stuck)} page(s) stopped following their job although it finished: {cases}. "
                      "Next step: look at the page errors above and the screenshots; the known cause (plotly.js "
                      "failing on a Train tab re-rendered mid-update) is avoided by building the tabs once "
                      "(dashboard/app.py `Tabs(dynamic=False)`), and `TrainTab.poll` (500 ms) feeds the curve."]
    if problems:
        lines += ["", "Distinct problems seen by the sessions: " + "; ".join(f"`{p[:160]}`" for p in problems[:8])]
    lines.append("")
    return lines


def write_doc(rows: list[Row], pytest_code: int, pytest_s: float, pytest_cmd: str, unclaimed: list[str],
              load: dict | None, load_code: int | None) -> None:
    total_cases = sum(r.cases for r in rows)
    total_survived = sum(r.survived for r in rows)
    lines = [
        "# Robustness",
        "",
        "What the product survives: bad input at every boundary, killed and interrupted work, damaged files, a full "
        "disk, many browser sessions at once. Generated by `python scripts/robustness_report.py` on "
        f"{datetime.datetime.now().strftime('%Y-%m-%d %H:%M')} ({platform.platform()}, {os.cpu_count()} CPUs); "
        "every number below comes from that command's output (results/robustness/summary.json, "
        "results/robustness/load_dashboard.json). Rerun it to refresh this page.",
        "",
        f"Tests: `{pytest_cmd.replace(str(REPO) + '/', '')}` exited {pytest_code} after {pytest_s:.0f} s. "
        f"{total_survived:,} of {total_cases:,} cases survived. A *case* is one generated example of a property "
        "test (Hypothesis), else one test or parametrized variant.",
        "",
        "| what was tried | tests | cases | survived | not yet: failing case, next step |",
        "|---|---:|---:|---:|---|",
    ]
    for r in rows:
        if r.items == 0:
            status = "**not run** (test missing from the report); next step: run it"
        elif r.failures:
            status = "<br>".join(r.failures[:3]) + (f"<br>(+{len(r.failures) - 3} more)" if len(r.failures) > 3 else "")
            status += f"<br>**next step:** {r.next_step}"
        else:
            status = "none"
        lines.append(f"| {r.title} | {r.items} | {r.cases:,} | {r.survived:,} | {status} |")
    if unclaimed:
        lines += ["", "Tests not in any row: " + ", ".join(f"`{u}`" for u in unclaimed)]
    lines += [""] + load_section(load, load_code)
    lines += [
        "## How the faults are made",
        "",
        "- *Killed training*: `tests/test_faults.py` runs the real `leviathan-explore train` through a driver that "
        "pauses inside one writer (the n-th optimizer step, checkpoint file, checkpoint rename, evaluation or "
        "metrics line), then sends SIGKILL; the random-moment test kills three times at uniform random times of the "
        "run. The resumed run is compared with an uninterrupted one: every logged loss, every evaluation and the "
        "final weights.",
        "- *Damaged checkpoints*: the newest checkpoint's files are truncated at a random length, have one bit "
        "flipped, or are deleted; the reader must name the checkpoint and file and use the previous one.",
        "- *Full disk*: the writer is patched to raise `OSError(ENOSPC)` part way (a small tmpfs needs root).",
        "- *Served app*: a real `leviathan-explore serve` and headless Chromium (Playwright).",
        "",
    ]
    DOC.parent.mkdir(parents=True, exist_ok=True)
    tmp = DOC.with_name(f".{DOC.name}.tmp")
    tmp.write_text("\n".join(lines))
    os.replace(tmp, DOC)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 4, 8], help="load benchmark levels (1 4 8)")
    parser.add_argument("--steps", type=int, default=20, help="training steps per model in the load benchmark (20)")
    parser.add_argument("--skip-load", action="store_true", help="run the tests only")
    parser.add_argument("--reuse", action="store_true",
                        help="do not rerun: rebuild the page from the last JUnit report and load JSON")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args(argv)

    if args.reuse:
        previous = json.loads(SUMMARY_JSON.read_text())
        pytest_code, pytest_s, pytest_cmd = previous["pytest"]["exit"], previous["pytest"]["seconds"], previous["pytest"]["command"]
        load_code = previous.get("load", {}).get("exit")
    else:
        pytest_code, pytest_s, pytest_cmd = run_pytest(args.pytest_args)
        load_code = None
        if not args.skip_load:
            load_code, _ = run_load(args.sessions, args.steps)
    items = read_junit(JUNIT)
    unclaimed = fill_rows(items)
    load = json.loads(LOAD_JSON.read_text()) if (load_code is not None and LOAD_JSON.is_file()) else None
    RESULTS.mkdir(parents=True, exist_ok=True)
    summary = {
        "command": "python scripts/robustness_report.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "pytest": {"command": pytest_cmd, "exit": pytest_code, "seconds": pytest_s},
        "load": {"exit": load_code, "json": str(LOAD_JSON.relative_to(REPO))} if load_code is not None else None,
        "rows": [{"title": r.title, "tests": r.items, "cases": r.cases, "survived": r.survived,
                  "failures": r.failures, "next_step": r.next_step if r.failures else None} for r in ROWS],
        "items": items,
        "unclaimed": unclaimed,
    }
    tmp = SUMMARY_JSON.with_name(f".{SUMMARY_JSON.name}.tmp")
    tmp.write_text(json.dumps(summary, indent=1) + "\n")
    os.replace(tmp, SUMMARY_JSON)
    write_doc(ROWS, pytest_code, pytest_s, pytest_cmd, unclaimed, load, load_code)
    total = sum(r.cases for r in ROWS)
    print(f"wrote {DOC.relative_to(REPO)}: {sum(r.survived for r in ROWS):,} of {total:,} cases survived; "
          f"pytest exit {pytest_code}" + (f", load benchmark exit {load_code}" if load_code is not None else ""))
    return 0 if pytest_code == 0 and load_code in (None, 0) else 1


if __name__ == "__main__":
    sys.exit(main())
