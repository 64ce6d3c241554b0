"""Benchmark harness: `python -m benchmarks [--quick] [--only NAME] [--threads N] [--device cuda]`.

Each case is a module ``benchmarks/bench_<name>.py`` exposing
``run(quick: bool) -> dict`` of measured numbers (and, where a case compares two
ways of doing one thing, both figures and their ratio, measured side by side in
the same run because this machine is noisy; ``benchmarks/common.py`` has the
interleaved timer and the prepared phantom workspace the cases share).
``--only`` replaces that case in ``results.json`` and keeps the others.
Cases whose ``run`` also takes ``device`` (embed, train, gan, counterfactual;
``DEVICE_CASES``) measure on a GPU with ``--device cuda``, stored as
``NAME@cuda``; ``scripts/gpu_run.sh`` runs them on a bare GPU machine.
"""
